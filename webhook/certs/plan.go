package certs

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Annotations on the Secret.
const (
	// AnnotationRotate, set by an operator to "ca" or "cert", forces a rotation; the rotator removes it.
	AnnotationRotate = "outrigger.dev/rotate"
	// AnnotationCARotatedAt records when the current CA was created, so that any leader knows when the
	// serving certificate may move to it.
	AnnotationCARotatedAt = "outrigger.dev/ca-rotated-at"
)

// Values of AnnotationRotate.
const (
	RotateCA   = "ca"
	RotateCert = "cert"
)

// policy decides what the Secret should hold. It is pure: no API calls, the time is given.
type policy struct {
	names            []string // the serving certificate's SANs; the first is its common name
	caValidity       time.Duration
	certValidity     time.Duration
	propagationDelay time.Duration
}

// secretState is the Secret as the rotator sees it. apply changes it in place.
type secretState struct {
	data        map[string][]byte
	annotations map[string]string
}

// outcome says what apply did.
type outcome struct {
	changed bool
	reasons []string  // one per change, for the log
	recheck time.Time // when to look again (a renewal, or the end of a CA rollout)
}

// apply brings s up to date at now. webhookBundles are the caBundles of the webhook configuration's
// webhooks as the API server has them; a serving certificate signed by a new CA is issued only once each
// of them holds that CA and propagationDelay has passed since the CA was created.
func (p policy) apply(s *secretState, webhookBundles [][]byte, now time.Time) (outcome, error) {
	var out outcome
	if s.data == nil {
		s.data = map[string][]byte{}
	}
	if s.annotations == nil {
		s.annotations = map[string]string{}
	}
	rotate := s.annotations[AnnotationRotate]
	if rotate != "" && rotate != RotateCA && rotate != RotateCert {
		out.reasons = append(out.reasons, fmt.Sprintf("ignoring %s=%q: want %q or %q", AnnotationRotate, rotate, RotateCA, RotateCert))
		delete(s.annotations, AnnotationRotate)
		out.changed = true
		rotate = ""
	}

	// The CA.
	bundle, _ := parseCerts(s.data[KeyCABundle])
	ca, caErr := parseKeyPair(s.data[KeyCABundle], s.data[KeyCAKey])
	caReason := ""
	switch {
	case caErr != nil:
		caReason = "no usable CA (" + caErr.Error() + ")"
	case !ca.cert.IsCA:
		caReason = "the CA certificate is not a CA"
	case !now.Before(renewAt(ca.cert)):
		caReason = fmt.Sprintf("the CA is due for renewal (expires %s)", ca.cert.NotAfter.Format(time.RFC3339))
	case rotate == RotateCA:
		caReason = "CA rotation requested by " + AnnotationRotate
	}
	if caReason != "" {
		certPEM, keyPEM, err := newCA(now, p.caValidity)
		if err != nil {
			return out, err
		}
		newCA, err := parseKeyPair(certPEM, keyPEM)
		if err != nil {
			return out, err
		}
		// The previous CA stays in the bundle while it is valid: the serving certificate it signed is still
		// being served until the new one is issued (after the rollout delay).
		keep := []*x509.Certificate{newCA.cert}
		if caErr == nil && now.Before(ca.cert.NotAfter) {
			keep = append(keep, ca.cert)
		}
		s.data[KeyCABundle] = encodeBundle(keep...)
		s.data[KeyCAKey] = keyPEM
		s.annotations[AnnotationCARotatedAt] = now.UTC().Format(time.RFC3339Nano)
		if rotate == RotateCA {
			delete(s.annotations, AnnotationRotate)
			rotate = ""
		}
		ca, bundle = newCA, keep
		out.changed = true
		out.reasons = append(out.reasons, "new CA: "+caReason)
	}

	// The serving certificate.
	leaf, leafErr := parseKeyPair(s.data[KeyCert], s.data[KeyKey])
	working := leafErr == nil && anyVerifies(leaf.cert, bundle, now)
	leafReason := ""
	switch {
	case leafErr != nil:
		leafReason = "no usable serving certificate (" + leafErr.Error() + ")"
	case !working:
		leafReason = "the serving certificate is expired or not signed by a CA in the bundle"
	case !slices.Equal(names(leaf.cert), sorted(p.names)):
		leafReason = fmt.Sprintf("the serving certificate names %v, want %v", names(leaf.cert), sorted(p.names))
	case !verifies(leaf.cert, ca.cert, now):
		leafReason = "moving the serving certificate to the new CA"
	case !now.Before(renewAt(leaf.cert)):
		leafReason = fmt.Sprintf("the serving certificate is due for renewal (expires %s)", leaf.cert.NotAfter.Format(time.RFC3339))
	case rotate == RotateCert:
		leafReason = "serving certificate rotation requested by " + AnnotationRotate
	}
	if leafReason != "" && working {
		// The served certificate still works: its replacement, signed by the current CA, must wait until
		// every API server can verify it.
		ready := time.Time{}
		if at, err := time.Parse(time.RFC3339Nano, s.annotations[AnnotationCARotatedAt]); err == nil {
			ready = at.Add(p.propagationDelay)
		}
		if !allHold(webhookBundles, ca.cert) || now.Before(ready) {
			out.recheck = later(now.Add(time.Second), ready)
			out.reasons = append(out.reasons, "waiting for the current CA to reach the webhook configuration before issuing a serving certificate it signs")
			leafReason = ""
		}
	}
	if leafReason != "" {
		certPEM, keyPEM, err := newServingCert(ca, p.names, now, p.certValidity)
		if err != nil {
			return out, err
		}
		s.data[KeyCert], s.data[KeyKey] = certPEM, keyPEM
		if rotate == RotateCert {
			delete(s.annotations, AnnotationRotate)
		}
		leaf, _ = parseKeyPair(certPEM, keyPEM)
		out.changed = true
		out.reasons = append(out.reasons, "new serving certificate: "+leafReason)
	}

	for _, t := range []time.Time{renewAt(ca.cert), renewAt(leaf.cert)} {
		if out.recheck.IsZero() || t.Before(out.recheck) {
			out.recheck = t
		}
	}
	out.recheck = later(out.recheck, now.Add(time.Second))
	return out, nil
}

// desiredBundle is the caBundle the webhook configuration must hold for s (nil if s has none yet).
func desiredBundle(s *secretState) []byte {
	if _, err := parseCerts(s.data[KeyCABundle]); err != nil {
		return nil
	}
	return s.data[KeyCABundle]
}

func anyVerifies(leaf *x509.Certificate, cas []*x509.Certificate, now time.Time) bool {
	return slices.ContainsFunc(cas, func(ca *x509.Certificate) bool { return verifies(leaf, ca, now) })
}

// allHold reports whether every bundle contains ca (and there is at least one bundle).
func allHold(bundles [][]byte, ca *x509.Certificate) bool {
	if len(bundles) == 0 {
		return false
	}
	for _, b := range bundles {
		certs, err := parseCerts(b)
		if err != nil || !slices.ContainsFunc(certs, func(c *x509.Certificate) bool { return bytes.Equal(c.Raw, ca.Raw) }) {
			return false
		}
	}
	return true
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// clone copies a Secret's data and annotations so that apply can work on them.
func clone(data map[string][]byte, annotations map[string]string) *secretState {
	return &secretState{data: maps.Clone(data), annotations: maps.Clone(annotations)}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
