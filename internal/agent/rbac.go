package agent

// The node agent only reads: the Pods of its node (to attribute flows), and
// Slices and Sites (to show a slice's description, URL and site contacts).
// `make manifests` turns these markers into config/agent/role.yaml.

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=planetkube.io,resources=slices;sites,verbs=get;list;watch
