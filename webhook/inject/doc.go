// Package inject is Outrigger's injection core: a pure function from a pod, what is known of its
// namespace, and the injector's configuration to the mutated pod and the decisions taken.
//
// The admission webhook and the `outrigger inject` CLI both call Inject, so they cannot drift apart (istio
// #26596: kube-inject and the webhook shared little code and drifted). Inject never touches the network,
// never sees HTTP or TLS, and mutates a typed copy of the pod; the webhook turns the difference into a
// JSON patch.
//
// What Inject may edit is a contract with that patch (webhook/patch.go), which looks nowhere else: the
// pod's annotations, its init containers (sidecars added and moved), its volumes, shareProcessNamespace,
// containers appended after the app's (containers mode), and the volume mounts and probes of the app's own
// containers. Anything else it must leave as submitted; if it ever edits another field, add it to the
// patch: TestThePatchCoversEveryChange (webhook) applies the patch to the submitted pod over the golden
// cases, and the fuzz target over every input, and compares the result with Inject's whole pod.
//
// Inject is all or nothing: any problem in the pod's annotations denies the whole request with every
// problem named, and no partial pod is returned.
package inject
