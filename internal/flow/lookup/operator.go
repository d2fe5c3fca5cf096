package lookup

import (
	"errors"
	"flag"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
)

// maxOperatorField bounds each operator field.
const maxOperatorField = 256

// Operator is who runs the testbed, as the page tells a stranger: PlanetLab's
// node page said whose node it was and whom to tell.
type Operator struct {
	// Name is the testbed's or its operator's name.
	Name string
	// URL is the testbed's web site (http or https).
	URL string
	// AbuseContact is where to report unwanted traffic: an e-mail address
	// or an http(s) URL.
	AbuseContact string
}

// BindFlags registers --operator-name, --operator-url and --abuse-contact.
func (o *Operator) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Name, "operator-name", "", "The testbed's (or its operator's) name, shown at the top of the flow lookup page.")
	fs.StringVar(&o.URL, "operator-url", "", "The testbed's web site (http or https), linked from the flow lookup page.")
	fs.StringVar(&o.AbuseContact, "abuse-contact", "", "Where to report unwanted traffic, shown on the flow lookup page: an e-mail address or an http(s) URL.")
}

// Validate refuses a URL that is not http(s), a contact that is neither an
// e-mail address nor such a URL, and fields over 256 bytes.
func (o Operator) Validate() error {
	var errs []error
	for _, f := range []struct{ flag, v string }{{"--operator-name", o.Name}, {"--operator-url", o.URL}, {"--abuse-contact", o.AbuseContact}} {
		if len(f.v) > maxOperatorField || strings.ContainsAny(f.v, "\r\n") {
			errs = append(errs, fmt.Errorf("%s: at most %d bytes on one line", f.flag, maxOperatorField))
		}
	}
	if o.URL != "" && !httpURL(o.URL) {
		errs = append(errs, fmt.Errorf("--operator-url: %q is not an http or https URL", o.URL))
	}
	if o.AbuseContact != "" && !httpURL(o.AbuseContact) && o.mail() == "" {
		errs = append(errs, fmt.Errorf("--abuse-contact: %q is neither an e-mail address nor an http or https URL", o.AbuseContact))
	}
	return errors.Join(errs...)
}

// mail is the abuse contact's address when it is one, else "".
func (o Operator) mail() string { return mailAddress(o.AbuseContact) }

// mailAddress is s when s is a bare e-mail address, else "".
func mailAddress(s string) string {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return ""
	}
	return a.Address
}

// ContactLink is the abuse contact as a link target: mailto for an address.
func (o Operator) ContactLink() string {
	if m := o.mail(); m != "" {
		return "mailto:" + m
	}
	if httpURL(o.AbuseContact) {
		return o.AbuseContact
	}
	return ""
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
