package certs

import (
	"bytes"
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"
)

var testPolicy = policy{
	names:            ServiceNames("outrigger-webhook", "outrigger-system"),
	caValidity:       300 * 24 * time.Hour,
	certValidity:     30 * 24 * time.Hour,
	propagationDelay: 10 * time.Second,
}

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// installed returns the state after the first pass over an empty Secret, with the caBundle published.
func installed(t *testing.T) *secretState {
	t.Helper()
	s := &secretState{}
	out, err := testPolicy.apply(s, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !out.changed {
		t.Fatal("an empty Secret was left empty")
	}
	return s
}

func mustCerts(t *testing.T, pemData []byte) []*x509.Certificate {
	t.Helper()
	c, err := parseCerts(pemData)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func leafOf(t *testing.T, s *secretState) *x509.Certificate { return mustCerts(t, s.data[KeyCert])[0] }

func TestEmptySecretGetsCAAndServingCertAtOnce(t *testing.T) {
	s := installed(t)
	bundle := mustCerts(t, s.data[KeyCABundle])
	if len(bundle) != 1 || !bundle[0].IsCA || bundle[0].Subject.CommonName != caCommonName {
		t.Fatalf("bundle = %d certs, first %v; want one CA", len(bundle), bundle[0].Subject)
	}
	leaf := leafOf(t, s)
	if !verifies(leaf, bundle[0], t0) {
		t.Fatal("the serving certificate does not verify against the CA")
	}
	if got, want := names(leaf), sorted(testPolicy.names); !slices.Equal(got, want) {
		t.Errorf("SANs %v, want %v", got, want)
	}
	if leaf.Subject.CommonName != "outrigger-webhook.outrigger-system.svc" {
		t.Errorf("common name %q", leaf.Subject.CommonName)
	}
	if _, err := parseKeyPair(s.data[KeyCert], s.data[KeyKey]); err != nil {
		t.Errorf("serving key: %v", err)
	}
	if _, err := parseKeyPair(s.data[KeyCABundle], s.data[KeyCAKey]); err != nil {
		t.Errorf("CA key: %v", err)
	}
}

func TestSteadyStateChangesNothing(t *testing.T) {
	s := installed(t)
	before := clone(s.data, s.annotations)
	out, err := testPolicy.apply(s, [][]byte{s.data[KeyCABundle]}, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if out.changed || len(out.reasons) > 0 {
		t.Fatalf("changed=%v reasons=%v on an up-to-date Secret", out.changed, out.reasons)
	}
	for k, v := range before.data {
		if !bytes.Equal(v, s.data[k]) {
			t.Errorf("%s changed", k)
		}
	}
	if want := renewAt(leafOf(t, s)); !out.recheck.Equal(want) {
		t.Errorf("recheck at %s, want the serving certificate's renewal %s", out.recheck, want)
	}
}

// TestCARotationKeepsTheOldCAAndWaitsBeforeMovingTheServingCert is the two-step rollout: at no moment
// does the Secret hold a serving certificate that the published caBundle cannot verify.
func TestCARotationKeepsTheOldCAAndWaitsBeforeMovingTheServingCert(t *testing.T) {
	s := installed(t)
	oldCA := mustCerts(t, s.data[KeyCABundle])[0]
	oldLeaf := s.data[KeyCert]
	published := [][]byte{s.data[KeyCABundle], s.data[KeyCABundle]} // two webhooks in the configuration

	s.annotations[AnnotationRotate] = RotateCA
	now := t0.Add(time.Hour)
	out, err := testPolicy.apply(s, published, now)
	if err != nil {
		t.Fatal(err)
	}
	bundle := mustCerts(t, s.data[KeyCABundle])
	if !out.changed || len(bundle) != 2 || bytes.Equal(bundle[0].Raw, oldCA.Raw) || !bytes.Equal(bundle[1].Raw, oldCA.Raw) {
		t.Fatalf("after rotate=ca: bundle of %d; want [new CA, old CA]", len(bundle))
	}
	if !bytes.Equal(s.data[KeyCert], oldLeaf) {
		t.Fatal("the serving certificate moved to the new CA before the caBundle held it")
	}
	if _, ok := s.annotations[AnnotationRotate]; ok {
		t.Error("the rotate annotation was not removed")
	}
	if !out.recheck.Equal(now.Add(testPolicy.propagationDelay)) {
		t.Errorf("recheck %s, want the end of the propagation delay %s", out.recheck, now.Add(testPolicy.propagationDelay))
	}
	newBundle := s.data[KeyCABundle]

	// The webhook configuration still has the old bundle: keep waiting, however long it takes.
	if out, _ := testPolicy.apply(s, published, now.Add(time.Minute)); out.changed || !bytes.Equal(s.data[KeyCert], oldLeaf) {
		t.Fatal("moved the serving certificate while the webhook configuration lacks the new CA")
	}
	// Only one of two webhooks has it.
	if out, _ := testPolicy.apply(s, [][]byte{newBundle, published[1]}, now.Add(time.Minute)); out.changed {
		t.Fatal("moved the serving certificate while one webhook lacks the new CA")
	}
	// Published, but the delay has not passed.
	if out, _ := testPolicy.apply(s, [][]byte{newBundle, newBundle}, now.Add(time.Second)); out.changed {
		t.Fatal("moved the serving certificate before the propagation delay")
	}
	// Published and the delay passed: the serving certificate moves; the old CA stays in the bundle.
	out, err = testPolicy.apply(s, [][]byte{newBundle, newBundle}, now.Add(testPolicy.propagationDelay))
	if err != nil {
		t.Fatal(err)
	}
	if !out.changed || bytes.Equal(s.data[KeyCert], oldLeaf) {
		t.Fatal("the serving certificate did not move to the new CA")
	}
	if !verifies(leafOf(t, s), bundle[0], now) || verifies(leafOf(t, s), oldCA, now) {
		t.Error("the new serving certificate is not signed by the new CA")
	}
	if !bytes.Equal(s.data[KeyCABundle], newBundle) {
		t.Error("the bundle changed when the serving certificate moved")
	}
}

func TestServingCertRotationKeepsTheBundle(t *testing.T) {
	s := installed(t)
	bundle, leaf := s.data[KeyCABundle], s.data[KeyCert]
	s.annotations[AnnotationRotate] = RotateCert
	out, err := testPolicy.apply(s, [][]byte{bundle}, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !out.changed || bytes.Equal(s.data[KeyCert], leaf) || !bytes.Equal(s.data[KeyCABundle], bundle) {
		t.Fatal("rotate=cert must issue a new serving certificate and keep the bundle")
	}
	if _, ok := s.annotations[AnnotationRotate]; ok {
		t.Error("the rotate annotation was not removed")
	}
}

func TestRenewalAtTwoThirdsOfTheLifetime(t *testing.T) {
	s := installed(t)
	bundle, leaf := s.data[KeyCABundle], leafOf(t, s)
	// Just before two thirds of the serving certificate's lifetime: nothing.
	if out, _ := testPolicy.apply(s, [][]byte{bundle}, renewAt(leaf).Add(-time.Second)); out.changed {
		t.Fatal("renewed too early")
	}
	out, err := testPolicy.apply(s, [][]byte{bundle}, renewAt(leaf))
	if err != nil {
		t.Fatal(err)
	}
	if !out.changed || leafOf(t, s).Equal(leaf) || !bytes.Equal(s.data[KeyCABundle], bundle) {
		t.Fatal("the serving certificate was not renewed under the same CA")
	}

	ca := mustCerts(t, bundle)[0]
	out, err = testPolicy.apply(s, [][]byte{bundle}, renewAt(ca))
	if err != nil {
		t.Fatal(err)
	}
	got := mustCerts(t, s.data[KeyCABundle])
	if !out.changed || len(got) != 2 || !got[1].Equal(ca) {
		t.Fatalf("CA renewal: bundle of %d, want [new, old]", len(got))
	}
}

func TestOnlyThePreviousCAIsKept(t *testing.T) {
	s := installed(t)
	first := mustCerts(t, s.data[KeyCABundle])[0]
	for i := 0; i < 2; i++ {
		s.annotations[AnnotationRotate] = RotateCA
		if _, err := testPolicy.apply(s, [][]byte{s.data[KeyCABundle]}, t0.Add(time.Duration(i+1)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	bundle := mustCerts(t, s.data[KeyCABundle])
	if len(bundle) != 2 || slices.ContainsFunc(bundle, first.Equal) {
		t.Fatalf("after two CA rotations the bundle has %d certs (first CA kept: %v); want the current and the previous",
			len(bundle), slices.ContainsFunc(bundle, first.Equal))
	}
}

func TestBrokenServingCertIsReplacedAtOnceEvenDuringARollout(t *testing.T) {
	s := installed(t)
	s.annotations[AnnotationRotate] = RotateCA
	if _, err := testPolicy.apply(s, [][]byte{s.data[KeyCABundle]}, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	s.data[KeyKey] = []byte("garbage")
	out, err := testPolicy.apply(s, nil, t0.Add(time.Hour+time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !out.changed || !verifies(leafOf(t, s), mustCerts(t, s.data[KeyCABundle])[0], t0.Add(time.Hour)) {
		t.Fatal("an unusable serving certificate must be replaced at once (nothing works with it anyway)")
	}
}

func TestNewNamesGetANewServingCert(t *testing.T) {
	s := installed(t)
	p := testPolicy
	p.names = append(ServiceNames("outrigger-webhook", "outrigger-system"), "127.0.0.1")
	out, err := p.apply(s, [][]byte{s.data[KeyCABundle]}, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !out.changed || !slices.Contains(names(leafOf(t, s)), "127.0.0.1") {
		t.Fatalf("SANs %v after adding 127.0.0.1", names(leafOf(t, s)))
	}
}

func TestUnknownRotateValueIsDroppedWithTheReason(t *testing.T) {
	s := installed(t)
	s.annotations[AnnotationRotate] = "everything"
	out, err := testPolicy.apply(s, [][]byte{s.data[KeyCABundle]}, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.annotations[AnnotationRotate]; ok || !out.changed {
		t.Fatal("an unknown rotate value was left in place")
	}
	if len(out.reasons) == 0 || !strings.Contains(out.reasons[0], `"everything"`) || !strings.Contains(out.reasons[0], `"ca" or "cert"`) {
		t.Errorf("reason %v does not name the value and what is accepted", out.reasons)
	}
}
