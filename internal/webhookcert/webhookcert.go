// Package webhookcert gives the manager's webhook server its TLS without
// cert-manager: github.com/open-policy-agent/cert-controller makes a CA and
// a serving certificate in a Secret of the manager's namespace, renews them
// before they expire, and writes the CA into the validating webhook
// configuration's caBundle. The Secret reaches the webhook server's
// certificate folder as a Secret volume (the chart mounts it, optional, so
// that the pod starts before it is filled); controller-runtime's
// certwatcher reloads it when the kubelet updates it.
package webhookcert

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
)

// The rotator reads and renews its Secret, watches the webhook
// configurations and writes the CA into PlanetKube's own.
// +kubebuilder:rbac:groups="",namespace=planetkube-system,resources=secrets,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=get;list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=update;patch,resourceNames=planetkube-validating-webhooks

// Lifetimes of what the rotator makes. The serving certificate is renewed
// 90 days before it expires (cert-controller's look-ahead), the CA with it.
const (
	CALifetime     = 5 * 365 * 24 * time.Hour
	ServerLifetime = 365 * 24 * time.Hour
)

// Options say where the certificate lives and whom it serves.
type Options struct {
	// Namespace and SecretName: the Secret holding the CA and the serving
	// certificate (made empty here if missing; the rotator fills it).
	Namespace, SecretName string
	// Service is the webhook Service's name: the certificate is for
	// <service>.<namespace>.svc (and .svc.cluster.local).
	Service string
	// ExtraDNSNames are further names the certificate is for (localhost on
	// the emulated cluster, whose API server calls the manager on loopback).
	ExtraDNSNames []string
	// Configuration is the ValidatingWebhookConfiguration whose caBundle
	// the rotator keeps.
	Configuration string
	// CertDir is the webhook server's certificate folder, where the Secret
	// is mounted.
	CertDir string
}

// DNSNames are the names the serving certificate is for.
func (o Options) DNSNames() []string {
	svc := o.Service + "." + o.Namespace + ".svc"
	return append([]string{svc, svc + ".cluster.local", o.Service + "." + o.Namespace, o.Service}, o.ExtraDNSNames...)
}

// Manage adds the rotator to the manager. The returned channel is closed
// once the certificate is in CertDir and the CA in the webhook
// configuration: register the webhooks then, not before (the webhook
// server cannot start without its certificate).
func Manage(ctx context.Context, mgr manager.Manager, o Options) (<-chan struct{}, error) {
	if err := ensureSecret(ctx, mgr, o); err != nil {
		return nil, err
	}
	names := o.DNSNames()
	ready := make(chan struct{})
	err := rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:              types.NamespacedName{Namespace: o.Namespace, Name: o.SecretName},
		CertDir:                o.CertDir,
		CAName:                 "planetkube-webhook-ca",
		CAOrganization:         "planetkube",
		DNSName:                names[0],
		ExtraDNSNames:          names[1:],
		IsReady:                ready,
		Webhooks:               []rotator.WebhookInfo{{Name: o.Configuration, Type: rotator.Validating}},
		FieldOwner:             "planetkube",
		ExtKeyUsages:           &[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		CaCertDuration:         CALifetime,
		ServerCertDuration:     ServerLifetime,
		RequireLeaderElection:  false, // every replica serves webhooks
		EnableReadinessCheck:   true,
		RestartOnSecretRefresh: false,
	})
	if err != nil {
		return nil, fmt.Errorf("adding the webhook certificate rotator: %w", err)
	}
	return ready, nil
}

// ensureSecret makes the rotator's Secret, empty, when it does not exist:
// the rotator only fills an existing one, and the chart makes none, so
// that no certificate material is ever in a template.
func ensureSecret(ctx context.Context, mgr manager.Manager, o Options) error {
	c, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		return err
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Namespace: o.Namespace, Name: o.SecretName,
		Labels: map[string]string{planetv1.LabelManagedBy: planetv1.ManagedByValue},
	}}
	err = c.Get(ctx, client.ObjectKeyFromObject(s), &corev1.Secret{})
	if apierrors.IsNotFound(err) {
		err = c.Create(ctx, s)
		if apierrors.IsAlreadyExists(err) { // another replica made it
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("ensuring the webhook certificate Secret %s/%s: %w", o.Namespace, o.SecretName, err)
	}
	return nil
}
