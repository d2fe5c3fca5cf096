// Package podcgroup finds a pod's cgroup folder in a hierarchy, as the
// kubelet lays pods out with either cgroup driver (systemd or cgroupfs) and
// for each QoS class.
package podcgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// ErrNotFound says the pod's cgroup is not there (yet, or any more).
var ErrNotFound = errors.New("the pod's cgroup is not found")

// Dirs returns where a pod's cgroup may be, relative to a hierarchy's root,
// for the systemd driver then the cgroupfs driver:
// kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with
// _ for ->.slice and kubepods/burstable/pod<uid>; Guaranteed pods sit
// directly under kubepods.
func Dirs(qos corev1.PodQOSClass, uid string) []string {
	systemdUID := strings.ReplaceAll(uid, "-", "_")
	switch qos {
	case corev1.PodQOSGuaranteed:
		return []string{
			filepath.Join("kubepods.slice", "kubepods-pod"+systemdUID+".slice"),
			filepath.Join("kubepods", "pod"+uid),
		}
	case corev1.PodQOSBestEffort:
		return []string{
			filepath.Join("kubepods.slice", "kubepods-besteffort.slice", "kubepods-besteffort-pod"+systemdUID+".slice"),
			filepath.Join("kubepods", "besteffort", "pod"+uid),
		}
	}
	return []string{
		filepath.Join("kubepods.slice", "kubepods-burstable.slice", "kubepods-burstable-pod"+systemdUID+".slice"),
		filepath.Join("kubepods", "burstable", "pod"+uid),
	}
}

// Find returns the pod's cgroup folder under root, whichever driver made it.
func Find(root string, qos corev1.PodQOSClass, uid string) (string, error) {
	if qos == "" {
		qos = corev1.PodQOSBurstable
	}
	for _, rel := range Dirs(qos, uid) {
		dir := filepath.Join(root, rel)
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir, nil
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("%w: pod %s (%s) under %s", ErrNotFound, uid, qos, root)
}

// V2Enables says whether the cgroup2 tree at root enables a controller
// (cpu, memory): its cgroup.controllers lists it.
func V2Enables(root, controller string) bool {
	b, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return false
	}
	return slices.Contains(strings.Fields(string(b)), controller)
}
