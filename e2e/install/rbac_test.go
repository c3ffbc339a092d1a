package install

import (
	"bufio"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// grant is one row of `kubectl auth can-i --list`: a resource, the names it is limited to, the verbs.
type grant struct{ resource, names, verbs string }

func (g grant) String() string { return fmt.Sprintf("%s %s %s", g.resource, g.names, g.verbs) }

// canIList runs `kubectl auth can-i --list --as=user -n ns` and returns its resource rows, without those
// Kubernetes grants every authenticated user (self-reviews; non-resource URLs).
func canIList(t *testing.T, user, ns string) []grant {
	t.Helper()
	out := kubectl(t, "", "auth", "can-i", "--list", "--as="+user, "-n", ns)
	var grants []grant
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Scan() // header: Resources  Non-Resource URLs  Resource Names  Verbs
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, " ") { // no resource: a non-resource URL row
			continue
		}
		f := regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1)
		if len(f) != 4 {
			t.Fatalf("cannot read can-i row %q", line)
		}
		if strings.HasPrefix(f[0], "selfsubject") {
			continue // every authenticated user may review itself (system:basic-user)
		}
		grants = append(grants, grant{resource: f[0], names: f[2], verbs: f[3]})
	}
	slices.SortFunc(grants, func(a, b grant) int { return strings.Compare(a.String(), b.String()) })
	return grants
}

// documentedGrants reads the chart README's RBAC table: the rows for mode, with <fullname> replaced.
func documentedGrants(t *testing.T, mode, fullname string) []grant {
	t.Helper()
	readme := readFile(t, filepath.Join(env.chart, "README.md"))
	_, table, ok := strings.Cut(readme, "<!-- rbac-table")
	if !ok {
		t.Fatal("charts/outrigger/README.md has no rbac-table")
	}
	var grants []grant
	for _, line := range strings.Split(table, "\n")[3:] { // the comment's rest, the header, the rule
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.Trim(strings.TrimSpace(cells[i]), "`")
		}
		resource, names, verbs, modes := cells[0], cells[1], cells[2], cells[3]
		if modes != "all" && modes != mode {
			continue
		}
		if names == "all" {
			names = "[]"
		} else {
			names = "[" + strings.ReplaceAll(names, "<fullname>", fullname) + "]"
		}
		grants = append(grants, grant{resource: resource, names: names, verbs: "[" + strings.ReplaceAll(verbs, ", ", " ") + "]"})
	}
	slices.SortFunc(grants, func(a, b grant) int { return strings.Compare(a.String(), b.String()) })
	return grants
}

// checkRBAC compares what the webhook's ServiceAccount may do, in its namespace and in another, with the
// README; namespaced grants must not reach the other namespace.
func checkRBAC(t *testing.T, mode, release, ns, other string) {
	t.Helper()
	sa := "system:serviceaccount:" + ns + ":" + release + "-webhook"
	want := documentedGrants(t, mode, release)
	got := canIList(t, sa, ns)
	t.Logf("%s may, in %s (besides self-reviews and discovery): %v", sa, ns, got)
	if !slices.Equal(got, want) {
		t.Errorf("kubectl auth can-i --list --as=%s -n %s:\n  %v\nthe chart README says:\n  %v", sa, ns, got, want)
	}
	var clusterWide []grant
	for _, g := range want {
		if g.resource != "secrets" && g.resource != "leases.coordination.k8s.io" {
			clusterWide = append(clusterWide, g)
		}
	}
	if got := canIList(t, sa, other); !slices.Equal(got, clusterWide) {
		t.Errorf("in namespace %s the webhook may: %v; want only the cluster-wide %v", other, got, clusterWide)
	}
}
