package memguard

import (
	"testing"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/client-go/kubernetes"
	typedevents "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/rest"
)

type eventsList struct{ eventsv1.EventList }

func mustEventsClient(t *testing.T, cfg *rest.Config) typedevents.EventsV1Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs.EventsV1()
}
