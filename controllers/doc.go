// Package controllers holds PlanetKube's reconcilers: one per kind, each
// thin. A reconciler reads the cluster, calls the pure decisions of
// internal/ (placement, cpushare, pools, expiry, trust, ticket, federation
// ...), and writes; every one has the same skeleton:
//
//  1. get the object (gone: what it leaves behind is let go);
//  2. the deletion branch, behind a finalizer added and removed with
//     setFinalizer (an optimistic lock: a stale copy never drops another
//     controller's finalizer);
//  3. a few steps, each failing with the reason its Ready condition shows;
//  4. one status write, deferred so that it happens on every exit, errors
//     included, and only when the status changed (patchStatus).
//
// Which reconciler owns which kind, and what makes it look again:
//
//   - Site (site_controller.go): the site's namespace and its PIs', techs'
//     and users' RoleBindings (owned); its status counts nodes and slices.
//     Watches the nodes and slices of the site.
//   - Slice (slice_*.go, slivers.go): a slice's namespace, users' keys and
//     access, and one sliver Pod per node it is placed on; everything but
//     status.federation. Watches its pods, namespace and RoleBinding, its
//     site's trust and limits, the other slices of its site (maxSlices),
//     and the cluster view (clusterview: nodes, free room, pools).
//   - Slice, second controller "federation" (federation_controller.go,
//     federation_tickets.go): a home slice's tickets for its peers, kept in
//     a Secret of the manager's namespace, pushed, and withdrawn;
//     status.federation only. Watches the slice's spec and expiry, the
//     Authorities it names, and (listed at start) the tickets' Secrets of
//     slices deleted meanwhile.
//   - ResourcePool (resourcepool_controller.go): the status of every pool,
//     from one accounting of them all (internal/pools), queued by the
//     cluster view.
//   - Ticket (ticket_*.go): redeeming a ticket into the foreign Slice or pool
//     part it grants, or the withdrawal of a slice; releasing what a ticket
//     no longer grants; the records of redeemed tickets (and their pruning,
//     RecordPruner). Watches the Authorities (keys), the Sites (trust), the
//     foreign slices and pool parts it made.
//   - Authority (authority_controller.go): an Authority's status, its
//     feed's poll and push check (internal/federation/pull), the install's
//     own Authority's keys, and the removal of what a deleted authority runs
//     here. Watches foreign slices and authority namespaces (counts,
//     deletion).
package controllers
