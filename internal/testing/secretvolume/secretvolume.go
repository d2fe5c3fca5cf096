// Package secretvolume does for a manager run as a local process what the
// kubelet does for a pod's Secret volume, which cannot exist without a
// kubelet: it keeps a Secret's keys as files in a folder, rewriting them
// when the Secret changes.
package secretvolume

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Mount copies the Secret's keys into dir every interval until ctx ends (the
// kubelet syncs Secret volumes periodically too). A key's file is written
// only when its content changed; a missing or empty Secret leaves dir as it is.
func Mount(ctx context.Context, c client.Reader, key client.ObjectKey, dir string, interval time.Duration) {
	last := map[string][]byte{}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s := &corev1.Secret{}
		if err := c.Get(ctx, key, s); err == nil {
			for k, v := range s.Data {
				if len(v) > 0 && !bytes.Equal(last[k], v) {
					if os.WriteFile(filepath.Join(dir, k), v, 0o600) == nil {
						last[k] = v
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
