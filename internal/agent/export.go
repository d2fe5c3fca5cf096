package agent

import (
	"errors"
	"flag"
	"fmt"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/planetkube/planetkube/internal/agent/ipfix"
)

// ExportOptions configure the IPFIX export of the flow records.
type ExportOptions struct {
	Collector         string
	ObservationDomain uint
	EnterpriseNumber  uint
	TemplateInterval  time.Duration
}

func (x *ExportOptions) bindFlags(fs *flag.FlagSet) {
	fs.StringVar(&x.Collector, "ipfix-collector", "", "Export every flow record as IPFIX (RFC 7011) to this collector, udp://host:port or tcp://host:port, with the slice's full name in each record; empty: no export.")
	fs.UintVar(&x.ObservationDomain, "ipfix-observation-domain", 0, "With --ipfix-collector: the observation domain ID of the messages (one per node lets a collector tell the nodes apart).")
	fs.UintVar(&x.EnterpriseNumber, "ipfix-enterprise-number", ipfix.DefaultEnterpriseNumber, "With --ipfix-collector: the private enterprise number of the slice-name element (default 32473, RFC 5612's example number).")
	fs.DurationVar(&x.TemplateInterval, "ipfix-template-interval", time.Minute, "With --ipfix-collector over UDP: how often the templates and slice names are sent again.")
}

func (x *ExportOptions) validate() error {
	if x.Collector == "" {
		return nil
	}
	var errs []error
	if _, _, err := ipfix.ParseCollector(x.Collector); err != nil {
		errs = append(errs, fmt.Errorf("--ipfix-collector: %w", err))
	}
	if x.ObservationDomain > 1<<32-1 || x.EnterpriseNumber == 0 || x.EnterpriseNumber > 1<<32-1 {
		errs = append(errs, errors.New("--ipfix-observation-domain and --ipfix-enterprise-number are 32-bit numbers, the enterprise number not 0"))
	}
	if x.TemplateInterval <= 0 {
		errs = append(errs, fmt.Errorf("--ipfix-template-interval must be positive, got %v", x.TemplateInterval))
	}
	return errors.Join(errs...)
}

// exporter makes the IPFIX exporter and registers its metrics, or returns
// nil without a collector.
func (x *ExportOptions) exporter() (*ipfix.Exporter, error) {
	if x.Collector == "" {
		return nil, nil
	}
	m := ipfix.NewMetrics()
	e, err := ipfix.New(ipfix.Options{
		Collector: x.Collector, ObservationDomain: uint32(x.ObservationDomain), EnterpriseNumber: uint32(x.EnterpriseNumber),
		TemplateInterval: x.TemplateInterval, Log: ctrl.Log.WithName("ipfix"),
	}, m)
	if err != nil {
		return nil, err
	}
	metrics.Registry.MustRegister(m.Collectors()...)
	return e, nil
}
