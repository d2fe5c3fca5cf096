package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// writeLog records the manager's writes to the API server, one line each:
// "<verb> <Kind> <namespace>/<name>".
type writeLog struct {
	mu    sync.Mutex
	lines []string
}

func (w *writeLog) add(c client.Client, verb string, obj client.Object, sub string) {
	kind := fmt.Sprintf("%T", obj)
	if gvk, err := apiutil.GVKForObject(obj, c.Scheme()); err == nil {
		kind = gvk.Kind
	}
	if sub != "" {
		kind += "/" + sub
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines = append(w.lines, fmt.Sprintf("%s %s %s/%s", verb, kind, obj.GetNamespace(), obj.GetName()))
}

// count returns how many writes were logged.
func (w *writeLog) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.lines)
}

// since returns the writes logged after the first n whose line contains any
// of the words.
func (w *writeLog) since(n int, words ...string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, l := range w.lines[min(n, len(w.lines)):] {
		for _, word := range words {
			if strings.Contains(l, word) {
				out = append(out, l)
				break
			}
		}
	}
	return out
}

// countWrites wraps a client so that every write it makes is logged in w.
func countWrites(c client.WithWatch, w *writeLog) client.WithWatch {
	return interceptor.NewClient(c, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			w.add(c, "create", obj, "")
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			w.add(c, "update", obj, "")
			return c.Update(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			w.add(c, "patch", obj, "")
			return c.Patch(ctx, obj, patch, opts...)
		},
		Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			line := fmt.Sprintf("apply %T", obj)
			if named, ok := obj.(interface {
				GetName() *string
				GetNamespace() *string
			}); ok && named.GetName() != nil && named.GetNamespace() != nil {
				line += fmt.Sprintf(" %s/%s", *named.GetNamespace(), *named.GetName())
			}
			w.mu.Lock()
			w.lines = append(w.lines, line)
			w.mu.Unlock()
			return c.Apply(ctx, obj, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			w.add(c, "delete", obj, "")
			return c.Delete(ctx, obj, opts...)
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			w.add(c, "update", obj, sub)
			return c.SubResource(sub).Update(ctx, obj, opts...)
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			w.add(c, "patch", obj, sub)
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	})
}
