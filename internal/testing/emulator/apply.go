package emulator

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"
)

// FieldManager is the server-side apply field manager of Apply.
const FieldManager = "planetkube-emulator"

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// Apply server-side applies (forcing conflicts) every YAML document of the
// given files and folders (recursively, *.yaml and *.yml, kustomization.yaml
// skipped). CustomResourceDefinitions go first and are waited for until
// Established, then Namespaces, then objects written without a namespace
// (cluster-scoped ones such as Sites, whose namespaces the rest may need),
// then everything else, each group in file order.
func (c *Cluster) Apply(ctx context.Context, paths ...string) error {
	objs, err := readObjects(paths)
	if err != nil {
		return err
	}
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int { return applyRank(a) - applyRank(b) })
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("building dynamic client: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("building discovery client: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	var crds []string
	for _, obj := range objs {
		if applyRank(obj) > 0 && len(crds) > 0 {
			if err := waitCRDsEstablished(ctx, dyn, crds); err != nil {
				return err
			}
			crds = nil
			mapper.Reset()
		}
		if err := applyObject(ctx, dyn, mapper, obj); err != nil {
			return err
		}
		if applyRank(obj) == 0 {
			crds = append(crds, obj.GetName())
		}
	}
	return waitCRDsEstablished(ctx, dyn, crds)
}

// applyRank orders objects: CRDs (0), Namespaces (1), objects without a
// namespace (2), the rest (3).
func applyRank(obj *unstructured.Unstructured) int {
	switch obj.GroupVersionKind().GroupKind() {
	case schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}:
		return 0
	case schema.GroupKind{Kind: "Namespace"}:
		return 1
	}
	if obj.GetNamespace() == "" {
		return 2
	}
	return 3
}

// applyObject server-side applies one object, resolving its resource with mapper.
func applyObject(ctx context.Context, dyn dynamic.Interface, mapper meta.ResettableRESTMapper, obj *unstructured.Unstructured) error {
	gvk := obj.GroupVersionKind()
	mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) { // a kind added since discovery was cached
		mapper.Reset()
		mapping, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return fmt.Errorf("mapping %s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := obj.GetNamespace()
		if ns == "" {
			ns = metav1.NamespaceDefault
		}
		ri = dyn.Resource(mapping.Resource).Namespace(ns)
	}
	if _, err := ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("applying %s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	return nil
}

// waitCRDsEstablished waits (at most a minute) until every named CRD has
// condition Established True.
func waitCRDsEstablished(ctx context.Context, dyn dynamic.Interface, names []string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, name := range names {
		err := waitFor(ctx, "CRD "+name+" Established", pollInterval, nil, func(ctx context.Context) bool {
			crd, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false
			}
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true
				}
			}
			return false
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// readObjects reads every YAML document of the files and folders in paths.
func readObjects(paths []string) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	for _, root := range paths {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if d.IsDir() || name == "kustomization.yaml" || name == "kustomization.yml" ||
				(!strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml")) {
				return nil
			}
			fileObjs, err := readFile(path)
			objs = append(objs, fileObjs...)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("reading manifests in %s: %w", root, err)
		}
	}
	return objs, nil
}

// readFile decodes the YAML documents of one file; empty documents are skipped.
func readFile(path string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("splitting %s: %w", path, err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", path, err)
		}
		if len(m) == 0 {
			continue
		}
		obj := &unstructured.Unstructured{Object: m}
		if obj.GetKind() == "" || obj.GetName() == "" {
			return nil, fmt.Errorf("decoding %s: a document lacks kind or metadata.name", path)
		}
		objs = append(objs, obj)
	}
}
