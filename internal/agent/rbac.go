package agent

// The node agent reads the Pods of its node (to attribute flows), and
// Slices and Sites (to show a slice's description, URL and site contacts).
// Its memory watchdog deletes the pod of the sliver it resets and writes
// events (on the Slice, and on the Node when memory runs high): RBAC cannot
// say "on its own node", so the chart's admission policy
// planetkube-node-agent-resets lets it delete only sliver pods of the node
// its token is bound to. Its segment server (--archive-listen-address)
// checks the archiver's tokens with TokenReview. `make manifests` turns
// these markers into config/agent/role.yaml.

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=planetkube.io,resources=slices;sites,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
