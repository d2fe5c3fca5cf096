// Package policy holds the decisions and parsers of the node agent's memory
// watchdog, PlanetKube's version of PlanetLab's pl_mom.
//
// PlanetLab's pl_mom checked a node every 30 seconds: it logged from 85 % of
// physical memory in use, reset the slice using the most memory at 90 % (and
// mailed the slice), and rebooted the node at 95 %. PlanetKube keeps the first
// two steps and drops the third: there is no reboot action here at all.
//
// Every check the agent reads /proc/meminfo (ParseMemInfo), lists the memory of
// each sliver on the node and asks a Watchdog for a Decision:
//
//   - below Config.WarnAt (default 0.85) the level is OK;
//   - from WarnAt on the level is Warn: the caller logs, counts a metric and
//     emits an event when Decision.Notify says so (at most once per
//     Config.Interval for the same level);
//   - from Config.ResetAt (default 0.90) on the level is Reset: the sliver using
//     the most memory is returned in Decision.Reset, and the caller resets it
//     (deletes its pod, which the controller recreates) and says so in an event
//     on its slice. At most one reset happens per Config.MinResetInterval
//     (default 5 minutes), and slivers of the slices in Config.Exempt are never
//     chosen. When no reset is returned at this level, Decision.Reason says why.
//
// Memory pressure stall information (/proc/pressure/memory) is parsed by
// ParsePressure so that the agent can report it; it does not drive decisions.
//
// This package only decides and parses: it kills no process and calls no
// Kubernetes API.
package policy
