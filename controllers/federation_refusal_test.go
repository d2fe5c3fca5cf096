package controllers

import (
	"errors"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestPushRefusal(t *testing.T) {
	tickets := schema.GroupResource{Group: "planetkube.io", Resource: "tickets"}
	webhook := apierrors.NewInvalid(schema.GroupKind{Group: "planetkube.io", Kind: "Ticket"}, "push-x", field.ErrorList{
		field.Invalid(field.NewPath("spec", "token"), "(token)", "NotTrusted: no site here trusts plc"),
	})
	for _, tc := range []struct {
		name    string
		err     error
		reason  string
		refused bool
	}{
		{"none", nil, "", false},
		{"a reason too long for the status", apierrors.NewInvalid(schema.GroupKind{Kind: "Ticket"}, "x", field.ErrorList{
			field.Invalid(field.NewPath("spec", "token"), "(token)", strings.Repeat("A", 200)+": hostile"),
		}), "Invalid", true},
		{"the peer's webhook", webhook, "NotTrusted", true},
		{"an invalid object", apierrors.NewInvalid(schema.GroupKind{Kind: "Ticket"}, "x", field.ErrorList{field.Required(field.NewPath("spec"), "")}), "Invalid", true},
		{"no right to apply tickets", apierrors.NewForbidden(tickets, "x", errors.New("no")), "Forbidden", true},
		{"a timeout", apierrors.NewTimeoutError("slow", 1), "", false},
		{"a network error", errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), "", false},
		{"the server's error", apierrors.NewInternalError(errors.New("etcd")), "", false},
	} {
		reason, refused := pushRefusal(tc.err)
		if reason != tc.reason || refused != tc.refused {
			t.Errorf("%s: %q, %v; want %q, %v", tc.name, reason, refused, tc.reason, tc.refused)
		}
	}
}
