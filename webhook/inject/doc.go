// Package inject is Outrigger's injection core: a pure function from a pod, what is known of its
// namespace, and the injector's configuration to the mutated pod and the decisions taken.
//
// The admission webhook and the `outrigger inject` CLI both call Inject, so they cannot drift apart (istio
// #26596: kube-inject and the webhook shared little code and drifted). Inject never touches the network,
// never sees HTTP or TLS, and mutates a typed copy of the pod; the webhook diffs the result into a JSON
// patch (istio #28800: hand-built patches are tedious and fragile).
//
// Inject is all or nothing: any problem in the pod's annotations denies the whole request with every
// problem named, and no partial pod is returned.
package inject
