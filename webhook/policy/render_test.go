package policy_test

import (
	"strings"
	"testing"

	"github.com/outrigger-dev/outrigger/webhook/config"
	"github.com/outrigger-dev/outrigger/webhook/policy"
)

// Two operator entries bring a volume of the same name: the webhook adds it once for both, which the policy
// cannot track, so the second is refused with the reason (and a pod asking for it is denied, not silently
// left without it). A refused entry that is a cluster default would deny every pod: Render refuses to write.
func TestAnEntryThePolicyCannotExpressIsRefusedWithTheReason(t *testing.T) {
	entries := `sidecars:
- name: agent-a
  description: a
  image: registry.example/a:1
  container: {}
  pod: {volumes: [{name: outrigger-shared, emptyDir: {}, mountPath: /shared}]}
- name: agent-b
  description: b
  image: registry.example/b:1
  container: {}
  pod: {volumes: [{name: outrigger-shared, emptyDir: {}, mountPath: /shared}]}
`
	cfg, err := config.Parse([]byte(entries), "")
	if err != nil {
		t.Fatal(err)
	}
	res, err := policy.Render(cfg, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Refused) != 1 || res.Refused[0].Sidecar != "agent-b" || !strings.Contains(res.Refused[0].Reason, "outrigger-shared is also agent-a's") {
		t.Fatalf("refused %+v, want agent-b for its shared volume", res.Refused)
	}
	if strings.Contains(strings.Join(res.Rendered, ","), "agent-b") {
		t.Errorf("agent-b rendered although refused: %v", res.Rendered)
	}
	denial := false
	for _, obj := range res.Objects {
		if obj["kind"] == "ValidatingAdmissionPolicy" {
			for _, v := range obj["spec"].(map[string]any)["validations"].([]any) {
				denial = denial || strings.Contains(v.(map[string]any)["messageExpression"].(string), "sidecar agent-b is not injected by Outrigger's admission policy")
			}
		}
	}
	if !denial {
		t.Error("no validation denies pods that ask for the refused agent-b")
	}

	cfg, err = config.Parse([]byte(entries+"defaults: [agent-b]\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Render(cfg, policy.Options{}); err == nil || !strings.Contains(err.Error(), "agent-b is a cluster-wide default but the policy cannot inject it") {
		t.Errorf("a refused default: %v, want an error naming it", err)
	}
}

func TestBadOptionsAreNamed(t *testing.T) {
	cfg, _ := config.Parse(nil, "")
	if _, err := policy.Render(cfg, policy.Options{APIVersion: "v2"}); err == nil || !strings.Contains(err.Error(), `api version "v2"`) {
		t.Errorf("api version v2: %v", err)
	}
	if _, err := policy.Render(cfg, policy.Options{Sidecars: []string{"topz", "tpoz"}}); err == nil || !strings.Contains(err.Error(), `sidecar "tpoz": not in the catalog; accepted: config-sync`) {
		t.Errorf("unknown sidecar: %v", err)
	}
}
