// Package certs is the webhook's self-managed certificate mode: the webhook keeps its own CA and serving
// certificate in one Secret, keeps the MutatingWebhookConfiguration's caBundle current, rotates both
// before they expire, and serves the certificate straight from the Secret (every replica watches it, so a
// new certificate is served within a second, with no kubelet volume sync and no restart).
//
// The Secret (created empty by the chart) holds:
//
//	ca.crt   the CA bundle: the current CA first, then the previous CA while it is still valid
//	ca.key   the current CA's key
//	tls.crt  the serving certificate, signed by a CA in ca.crt
//	tls.key  its key
//
// Rotation runs under leader election (a Lease named like the Secret, also created by the chart), so two
// replicas never race to write different CAs. A CA rotation is done in two steps, so that no API server
// ever holds a caBundle that does not verify the certificate being served:
//
//  1. a new CA is created and put first in the bundle, the old CA stays in it; the caBundle is updated;
//  2. only when the webhook configuration holds the new bundle and PropagationDelay has passed (time for
//     every API server to see it) is a serving certificate signed by the new CA issued.
//
// A serving-certificate renewal under the same CA never changes the caBundle. Both are renewed when two
// thirds of their lifetime has passed. An operator forces a rotation by annotating the Secret with
// outrigger.dev/rotate=ca (new CA, then new serving certificate) or outrigger.dev/rotate=cert (new serving
// certificate); the rotator removes the annotation when it is done.
//
// Why not github.com/open-policy-agent/cert-controller (v0.16.0), the usual library for this: it writes
// only the newest CA into ca.crt and the caBundle (populateSecret, ensureCerts), and issues the new CA and
// the serving certificate signed by it in the same write, so every CA rotation rejects admissions until
// each replica serves the new certificate; it needs cluster-wide list/watch on webhook configurations and
// list/watch on every Secret of the namespace; it issues RSA keys with fixed serial numbers 0 and 1.
// Doing the two-step rollout on top of it would mean intercepting its writes, so this package does the
// little it needs with client-go (leader election, name-scoped informers) and crypto/x509.
package certs
