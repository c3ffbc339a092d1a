package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outrigger-dev/outrigger/webhook/catalog"
	"github.com/outrigger-dev/outrigger/webhook/config"
	"github.com/outrigger-dev/outrigger/webhook/inject"
)

// valueCheck is CEL over v (a CEL string expression) accepting what p.Check accepts, and whether the type
// has one. "" is accepted for a parameter that is not required, as Check does.
func valueCheck(p catalog.Parameter) (func(v string) string, bool) {
	intRange := func(min, max string) func(string) string {
		return func(v string) string {
			t := v + ".trim()"
			return fmt.Sprintf(`%s.matches("^[+-]?[0-9]{1,18}$") && int(%s) >= %s && int(%s) <= %s`, t, t, min, t, max)
		}
	}
	switch p.Type {
	case "string", "list":
		return func(string) string { return "true" }, true
	case "bool":
		return func(v string) string {
			return v + `.trim().lowerAscii() in ["true", "1", "yes", "on", "false", "0", "no", "off"]`
		}, true
	case "port":
		return intRange("1", "65535"), true
	case "int":
		min, max := p.Min, p.Max
		if min == "" {
			min = "0"
		}
		if max == "" {
			max = "9223372036854775807"
		}
		return intRange(min, max), true
	case "duration", "seconds-or-duration":
		// Bounds as durationCheck has them: at least Min (0 when unset), at most Max when set.
		min, max := "0s", p.Max
		if p.Min != "" {
			min = p.Min
		}
		minD, _ := time.ParseDuration(min)
		maxD, _ := time.ParseDuration(max)
		bound := func(v string) string {
			b := fmt.Sprintf("duration(%s) >= duration(%s)", v, str(min))
			if max != "" {
				b += fmt.Sprintf(" && duration(%s) <= duration(%s)", v, str(max))
			}
			return b
		}
		const goDuration = `^[-+]?(([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$|^[-+]?0$`
		return func(v string) string {
			t := v + ".trim()"
			d := fmt.Sprintf(`(%s.matches("%s") && %s)`, t, goDuration, bound(t))
			if p.Type == "duration" {
				return d
			}
			// A bare number of seconds, as strconv.ParseFloat reads it (envflag.SecondsOrDuration).
			const float = `^[-+]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][-+]?[0-9]+)?$`
			secs := fmt.Sprintf(`(%s.matches("%s") && double(%s) >= %g`, t, float, t, minD.Seconds())
			if max != "" {
				secs += fmt.Sprintf(" && double(%s) <= %g", t, maxD.Seconds())
			}
			return "(" + secs + ") || " + d + ")"
		}, true
	case "enum":
		return func(v string) string { return v + " in " + strList(p.Values) }, true
	case "host-port":
		return func(v string) string {
			port := fmt.Sprintf(`%s.substring(%s.lastIndexOf(":") + 1)`, v, v)
			c := fmt.Sprintf(`%s.matches("^(\\[[^\\]]*\\]|[^:\\[\\]]*):[0-9]{1,5}$") && int(%s) >= 1 && int(%s) <= 65535`, v, port, port)
			if p.Probed { // as catalog.loopbackHost: localhost, 127.0.0.0/8, ::1
				host := fmt.Sprintf(`%s.substring(0, %s.lastIndexOf(":"))`, v, v)
				c += fmt.Sprintf(` && !(%s == "localhost" || %s.matches("^127\\.[0-9]+\\.[0-9]+\\.[0-9]+$") || %s in ["[::1]", "[0:0:0:0:0:0:0:1]"])`, host, host, host)
			}
			return c
		}, true
	case "absolute-path":
		return func(v string) string { return fmt.Sprintf(`%s.startsWith("/") && !%s.contains(":")`, v, v) }, true
	case "object-name":
		return func(v string) string {
			return fmt.Sprintf(`%s.size() <= 253 && %s.matches("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")`, v, v)
		}, true
	case "namespace":
		return func(v string) string {
			return fmt.Sprintf(`%s.size() <= 63 && %s.matches("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")`, v, v)
		}, true
	case "command-name":
		return func(v string) string { return fmt.Sprintf(`!%s.matches("[/ \\t]")`, v) }, true
	case "delimiters":
		// envflag.Delimiters counts bytes, as the hashing reads them.
		return func(v string) string { return fmt.Sprintf(`bytes(%s).size() == 2`, v) }, true
	case "signal":
		names, numbers := signals(p.Values)
		return func(v string) string {
			t := v + ".trim()"
			u := t + ".upperAscii()"
			return fmt.Sprintf(`(%s.startsWith("SIG") ? %s : "SIG" + %s) in %s || %s in %s`, u, u, u, strList(names), t, strList(numbers))
		}, true
	case "url":
		return func(v string) string { return v + `.matches("^(?i)https?://[^/?#@]*[^/?#@:]")` }, true
	case "app-probes":
		// Only ever injected: the annotation is refused whatever its value (entryValidations).
		return func(string) string { return "true" }, true
	case "repo-url":
		// envflag.RepoURL: scp-like, or a scheme it accepts and no password in the authority.
		return func(v string) string {
			return fmt.Sprintf(`%s.matches("^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:") || %s.matches("^(?i)(https?|ssh|file):") && !%s.matches("^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*:[^/?#]*@")`, v, v, v)
		}, true
	case "size":
		min, max, _ := catalog.SizeBounds(p)
		return func(v string) string {
			t := v + ".trim()"
			digits := fmt.Sprintf(`(%s.matches("(Ki|Mi|Gi)$") ? %s.substring(0, %s.size() - 2) : %s)`, t, t, t, t)
			unit := fmt.Sprintf(`(%s.endsWith("Gi") ? 1073741824 : %s.endsWith("Mi") ? 1048576 : %s.endsWith("Ki") ? 1024 : 1)`, t, t, t)
			// At most max/unit first, so that the product cannot overflow int64 (13 digits times 2^30 could).
			return fmt.Sprintf(`%s.matches("^[0-9]{1,13}(Ki|Mi|Gi)?$") && int(%s) <= %d / %s && int(%s) * %s >= %d`, t, digits, max, unit, digits, unit, min)
		}, true
	case "quantity":
		return func(v string) string {
			return fmt.Sprintf(`isQuantity(%s) && !quantity(%s).isLessThan(quantity("0"))`, v, v)
		}, true
	}
	return nil, false
}

// signals are the names and numbers envflag.Signal accepts: allowed (SIGHUP, ...), or every signal.
func signals(allowed []string) (names, numbers []string) {
	for n := 1; n < 65; n++ {
		name := unix.SignalName(syscall.Signal(n))
		if name != "" && (len(allowed) == 0 || slices.Contains(allowed, name)) {
			names, numbers = append(names, name), append(numbers, strconv.Itoa(n))
		}
	}
	return names, numbers
}

// want is the "want ..." part of p.Check's error, for the denial message.
func want(p catalog.Parameter) string {
	for _, probe := range []string{"\x01", "-1", "99999999999", "a/b c"} {
		if err := p.Check(probe); err != nil {
			return err.Error()
		}
	}
	return "a valid value"
}

func (r *renderer) validatingVariables() [][2]string {
	known := append(r.renderedNames(), refusedNames(r.refused)...)
	vars := r.commonVariables(known)
	vars = append(vars, r.paramVariables()...)
	for i, e := range r.entries {
		// Asked for, and still absent after the mutating policy: it was not added because of a problem.
		vars = append(vars, [2]string{sidecarVar(i, "absent"), fmt.Sprintf("variables.requested.exists(n, n == %s) && !%s", str(e.Name), present(e.Name))})
	}
	return vars
}

func refusedNames(refused []Refusal) []string {
	var out []string
	for _, r := range refused {
		out = append(out, r.Sidecar)
	}
	return out
}

// validations deny what inject denies, each naming the annotation, the value and what is accepted.
func (r *renderer) validations() []any {
	var out []any
	add := func(expression, message string) {
		out = append(out, map[string]any{"expression": expression, "messageExpression": message, "reason": "Invalid"})
	}
	names := r.cfg.Catalog.Names()
	own := []string{inject.AnnotationInject, inject.AnnotationSidecarMode, inject.AnnotationStatus}
	bad := fmt.Sprintf(`variables.ann.filter(k, k.startsWith(%s) && !(k in %s))`, str(catalog.Domain+"/"), strList(own))
	add(bad+".size() == 0", fmt.Sprintf(`"outrigger: annotation " + %s[0] + ": unknown; accepted in %s/: inject, sidecar-mode (and <sidecar>.%s/<parameter>)"`, bad, catalog.Domain, catalog.Domain))

	domainOf := `k.split("/")[0]`
	sidecarOf := fmt.Sprintf(`%s.substring(0, %s.size() - %d)`, domainOf, domainOf, len(catalog.Domain)+1)
	unknown := fmt.Sprintf(`variables.ann.filter(k, k.contains("/") && %s.endsWith(%s) && !(%s in %s))`, domainOf, str("."+catalog.Domain), sidecarOf, strList(names))
	add(unknown+".size() == 0", fmt.Sprintf(`"outrigger: annotation " + %s[0] + ": unknown sidecar; accepted: %s"`, unknown, strings.Join(names, ", ")))

	mode := fmt.Sprintf(`variables.ann[%s]`, str(inject.AnnotationSidecarMode))
	add(fmt.Sprintf(`!(%s in variables.ann) || %s in [%s, %s]`, str(inject.AnnotationSidecarMode), mode, str(config.ModeNative), str(config.ModeContainers)),
		fmt.Sprintf(`"outrigger: annotation %s=\"" + %s + "\": want %s or %s"`, inject.AnnotationSidecarMode, mode, config.ModeNative, config.ModeContainers))

	known := append(r.renderedNames(), refusedNames(r.refused)...)
	for _, level := range []struct{ vars, where string }{{"variables.ann", "pod annotation"}, {"variables.nsann", "namespace annotation"}} {
		v := fmt.Sprintf(`%s[%s]`, level.vars, str(inject.AnnotationInject))
		badNames := fmt.Sprintf(`%s.split(",").map(s, s.trim()).filter(s, s != "" && !(s in %s))`, v, strList(known))
		add(fmt.Sprintf(`!(%s in %s) || %s.trim().lowerAscii() in ["false", "none", "true", ""] || %s.size() == 0`, str(inject.AnnotationInject), level.vars, v, badNames),
			fmt.Sprintf(`"outrigger: %s %s=\"" + %s + "\": unknown sidecar \"" + %s[0] + "\"; accepted: %s, or \"none\""`, level.where, inject.AnnotationInject, v, badNames, strings.Join(known, ", ")))
	}
	for _, rf := range r.refused {
		add(fmt.Sprintf(`!variables.requested.exists(n, n == %s)`, str(rf.Sidecar)),
			str(fmt.Sprintf("outrigger: sidecar %s is not injected by Outrigger's admission policy: %s; use the webhook for it", rf.Sidecar, rf.Reason)))
	}
	for i, e := range r.entries {
		r.entryValidations(i, e, add)
	}
	return out
}

// entryValidations: the entry's parameters and values (parsePodAnnotations), and, when it is asked for but
// was not added, the problem that kept it out (builder.add).
func (r *renderer) entryValidations(i int, e *catalog.Entry, add func(expression, message string)) {
	prefix := e.AnnotationPrefix()
	var keys []string
	for _, p := range e.Parameters {
		keys = append(keys, annotationKey(e, p))
	}
	badParam := fmt.Sprintf(`variables.ann.filter(k, k.startsWith(%s) && !(k in %s))`, str(prefix), strList(keys))
	add(badParam+".size() == 0", fmt.Sprintf(`"outrigger: annotation " + %s[0] + ": %s has no parameter \"" + %s[0].substring(%d) + "\"; accepted: %s"`,
		badParam, e.Name, badParam, len(prefix), strings.Join(e.ParamNames(), ", ")))
	for j, p := range e.Parameters {
		check, _ := valueCheck(p)
		k := str(annotationKey(e, p))
		v := paramVar(i, j)
		if p.Injected {
			add(fmt.Sprintf("!(%s in variables.ann)", k), str("outrigger: annotation "+annotationKey(e, p)+": "+inject.InjectedParameter))
			continue
		}
		add(fmt.Sprintf(`!(%s in variables.ann) || !%s.contains("\u0000")`, k, v),
			fmt.Sprintf(`"outrigger: annotation %s=\"" + %s + "\": must not contain a NUL byte"`, annotationKey(e, p), v))
		cond := check(v)
		if cond == "true" {
			continue
		}
		if !p.Required && p.Type != "quantity" { // an empty quantity is refused, as Check does
			cond = v + ` == "" || ` + cond
		}
		shown := `"=\"" + ` + v + ` + "\""`
		if p.Type == "repo-url" {
			shown = `""` // it may hold a password, which CEL cannot redact as inject does (envflag.RedactURL)
		}
		add(fmt.Sprintf("!(%s in variables.ann) || (%s)", k, cond),
			fmt.Sprintf(`"outrigger: annotation %s" + %s + ": %s"`, annotationKey(e, p), shown, strings.ReplaceAll(want(p), `"`, `\"`)))
	}
	absent := "variables." + sidecarVar(i, "absent")
	for j, p := range e.Parameters {
		if p.Required {
			add(fmt.Sprintf(`!%s || %s != ""`, absent, paramVar(i, j)),
				str(fmt.Sprintf("outrigger: sidecar %s needs the annotation %s (%s)", e.Name, annotationKey(e, p), p.Doc)))
		}
	}
	for _, group := range e.RequireOneOf {
		var any, groupKeys []string
		for _, name := range group {
			any = append(any, "("+when(i, e, name)+")")
			groupKeys = append(groupKeys, prefix+name)
		}
		add(fmt.Sprintf("!%s || %s", absent, strings.Join(any, " || ")),
			str(fmt.Sprintf("outrigger: sidecar %s needs one of the annotations %s", e.Name, strings.Join(groupKeys, ", "))))
	}
	for _, v := range e.Pod.Volumes {
		if c := sourceNamed(i, e, v); c != "" && !namedByRequired(e, v) {
			add(fmt.Sprintf("!%s || %s", absent, c), str(fmt.Sprintf("outrigger: sidecar %s: volume %s has no source name", e.Name, v.Name)))
		}
		if path, ok := appMountPath(i, e, v); ok {
			clash := fmt.Sprintf("object.spec.containers.filter(c, %s && %s)", r.appContainer(i, e, v, "c"), conflict("c", v.Name, path))
			add(fmt.Sprintf("!%s || !(%s) || %s.size() == 0", absent, volumeWhen(i, e, v), clash),
				fmt.Sprintf(`"outrigger: container " + %s[0].name + " already mounts another volume at " + %s + ", where %s would mount its volume %s; choose another path with the annotation %smount-path"`, clash, path, e.Name, v.Name, prefix))
		}
	}
	for _, v := range e.Pod.Volumes {
		only := appOnly(i, e, v)
		if only == "" {
			continue
		}
		key := ""
		for _, p := range e.Parameters {
			if vol, field, _ := catalog.ParseSets(p.Sets); vol == v.Name && field == "appContainers" {
				key = annotationKey(e, p)
			}
		}
		names, unknown := r.listedApps(only)
		apps := fmt.Sprintf(`object.spec.containers.map(c, c.name).filter(n, !(n in %s)).join(", ")`, strList(r.cfg.Catalog.Names()))
		add(fmt.Sprintf(`!%s || !(%s) || %s == "" || %s.size() > 0`, absent, volumeWhen(i, e, v), only, names),
			fmt.Sprintf(`"outrigger: annotation %s=\"" + %s + "\": want a comma-separated list of app container names"`, key, only))
		add(fmt.Sprintf(`!%s || !(%s) || %s == "" || %s.size() == 0`, absent, volumeWhen(i, e, v), only, unknown),
			fmt.Sprintf(`"outrigger: annotation %s=\"" + %s + "\": no app container \"" + %s[0] + "\" in the pod; its app containers: " + %s`, key, only, unknown, apps))
	}
	for _, lr := range resourcePairs(i, e) {
		add(fmt.Sprintf("!%s || %s", absent, lr.ok()),
			fmt.Sprintf(`"outrigger: sidecar %s: %s limit " + %s + " (" + %s + ") is below its request " + %s + " (" + %s + "): a limit must be at least its request"`,
				e.Name, lr.resource, lr.limit, lr.limitFrom, lr.request, lr.requestFrom))
	}
	if sp := sharesPID(i, e); sp != "false" {
		add(fmt.Sprintf("!%s || !(%s) || !(has(object.spec.shareProcessNamespace) && !object.spec.shareProcessNamespace)", absent, sp),
			str(fmt.Sprintf("outrigger: sidecar %s needs a shared PID namespace, but the pod sets spec.shareProcessNamespace: false; remove that field or drop %s", e.Name, e.Name)))
		if !r.cfg.AllowHostPID {
			add(fmt.Sprintf("!variables.requested.exists(n, n == %s) || !(%s) || !(has(object.spec.hostPID) && object.spec.hostPID)", str(e.Name), sp),
				str(fmt.Sprintf("outrigger: sidecar %s would see every process of the node: the pod uses hostPID; drop %s, or set allowHostPID: true in the injector's config", e.Name, e.Name)))
		}
	}
}

// namedByRequired reports whether a required parameter names volume v's source (its absence is reported
// as the missing parameter).
func namedByRequired(e *catalog.Entry, v catalog.Volume) bool {
	for _, p := range e.Parameters {
		if vol, field, _ := catalog.ParseSets(p.Sets); vol == v.Name && (field == "secretName" || field == "configMapName") && p.Required {
			return true
		}
	}
	return false
}
