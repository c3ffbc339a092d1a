package inject

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/outrigger-dev/outrigger/internal/envflag"
	"github.com/outrigger-dev/outrigger/webhook/catalog"
	"github.com/outrigger-dev/outrigger/webhook/config"
)

// builder adds sidecars to a pod copy. Problems are collected; nothing is committed to the pod's container
// lists until commit, which Inject calls only when there is no problem.
type builder struct {
	pod     *corev1.Pod
	cfg     *config.Config
	mode    string
	pending []corev1.Container
	used    []*catalog.Entry
	// hashes[name] is config.SidecarHash of each sidecar this builder rendered.
	hashes   map[string]string
	problems []string
	warnings []string
}

// present reports whether a container of that name is already in the pod (injected earlier, by a previous
// invocation, or written by the user): it is never added twice.
func (b *builder) present(name string) bool {
	for _, list := range [][]corev1.Container{b.pod.Spec.InitContainers, b.pod.Spec.Containers} {
		for _, c := range list {
			if c.Name == name {
				return true
			}
		}
	}
	return false
}

func (b *builder) problem(format string, args ...any) {
	b.problems = append(b.problems, fmt.Sprintf(format, args...))
}

// add builds e's container from its template and the pod's parameter values, and adds what the pod needs.
func (b *builder) add(e *catalog.Entry, values, keys map[string]string) {
	c := e.Container.DeepCopy()
	c.Name = e.Name
	c.Image = b.cfg.Image(e)
	c.ImagePullPolicy = b.cfg.Images.PullPolicy

	for _, p := range e.Parameters {
		if p.Required && values[e.ParamName(p)] == "" {
			b.problem("sidecar %s needs the annotation %s%s (%s)", e.Name, e.AnnotationPrefix(), e.ParamName(p), p.Doc)
		}
	}
	for _, group := range e.RequireOneOf {
		set := false
		for _, name := range group {
			set = set || values[name] != ""
		}
		if !set {
			keys := make([]string, len(group))
			for i, name := range group {
				keys[i] = e.AnnotationPrefix() + name
			}
			b.problem("sidecar %s needs one of the annotations %s", e.Name, strings.Join(keys, ", "))
		}
	}
	for _, p := range e.Parameters {
		v := values[e.ParamName(p)]
		if p.Env == "" || v == "" {
			continue
		}
		setEnv(c, p.Env, EnvLiteral(v))
		movePort(c, p, v)
	}
	b.setResources(e, c, values, keys)
	for _, v := range e.Pod.Volumes {
		b.addVolume(e, c, v, values, keys)
	}
	if e.SharesProcessNamespace(values) {
		if sp := b.pod.Spec.ShareProcessNamespace; sp != nil && !*sp {
			b.problem("sidecar %s needs a shared PID namespace, but the pod sets spec.shareProcessNamespace: false; remove that field or drop %s", e.Name, e.Name)
		} else if b.pod.Spec.HostPID && !b.cfg.AllowHostPID {
			b.problem("sidecar %s would see every process of the node: the pod uses hostPID; drop %s, or set allowHostPID: true in the injector's config", e.Name, e.Name)
		} else if b.pod.Spec.HostPID {
			b.warnings = append(b.warnings, fmt.Sprintf("outrigger: %s sees the node's processes: the pod uses hostPID (allowed by the injector's config)", e.Name))
		} else {
			t := true
			b.pod.Spec.ShareProcessNamespace = &t
		}
	}
	if e.SignalsApp(values) {
		b.signalAsAppUID(e, c)
	}
	b.pointAppProbes(e, c, values)
	if b.mode == config.ModeNative {
		always := corev1.ContainerRestartPolicyAlways
		c.RestartPolicy = &always
	} else {
		c.RestartPolicy = nil
	}
	b.warnPortConflicts(c)
	if b.hashes == nil {
		b.hashes = map[string]string{}
	}
	b.hashes[e.Name] = b.cfg.SidecarHash(e, c)
	b.pending = append(b.pending, *c)
	b.used = append(b.used, e)
}

// setResources applies the pod's resource annotations (cpu-request, memory-limit, ...) over the catalog's
// and the config's resources, and refuses a limit below its request, naming where each value came from.
func (b *builder) setResources(e *catalog.Entry, c *corev1.Container, values, keys map[string]string) {
	from := map[string]string{}
	for _, p := range e.Parameters {
		kind, r, ok := catalog.ParseResourceSets(p.Sets)
		if !ok {
			continue
		}
		where := "the catalog's default"
		if p.DefaultSource != "" {
			where = p.DefaultSource
		}
		v := values[e.ParamName(p)]
		if v != "" {
			where = "annotation " + keys[e.ParamName(p)]
			list := &c.Resources.Requests
			if kind == "limits" {
				list = &c.Resources.Limits
			}
			if *list == nil {
				*list = corev1.ResourceList{}
			}
			(*list)[r] = resource.MustParse(v) // checked by parsePodAnnotations
		}
		from[kind+"/"+string(r)] = where
	}
	for _, p := range catalog.ResourceProblems(c.Resources, func(kind string, r corev1.ResourceName) string { return from[kind+"/"+string(r)] }) {
		b.problem("sidecar %s: %s", e.Name, p)
	}
}

// addVolume adds e's volume v to the pod (unless one of that name is there), mounts it into the sidecar,
// and, when it has an app mount path, into every app container.
func (b *builder) addVolume(e *catalog.Entry, c *corev1.Container, v catalog.Volume, values, keys map[string]string) {
	if !v.Added(values) || v.NeedsServiceAccount() && b.pod.Spec.ServiceAccountName == "" {
		return
	}
	vol := corev1.Volume{Name: v.Name, VolumeSource: *v.VolumeSource.DeepCopy()}
	appPath, appPathKey := v.AppMountPath, ""
	var only []string // the app containers an appContainers parameter lists (nil: all)
	onlyKey, onlyValue := "", ""
	for _, p := range e.Parameters {
		if p.Sets == "" {
			continue
		}
		volName, field, _ := catalog.ParseSets(p.Sets)
		value := values[e.ParamName(p)]
		if volName != v.Name || value == "" {
			continue
		}
		switch field {
		case "secretName":
			vol.Secret.SecretName = value
		case "configMapName":
			vol.ConfigMap.Name = value
		case "appMountPath":
			appPath, appPathKey = value, keys[e.ParamName(p)]
		case "appContainers":
			only, onlyKey, onlyValue = envflag.SplitList(value), keys[e.ParamName(p)], value
		case "sizeLimit":
			if q, err := resource.ParseQuantity(value); err == nil && vol.EmptyDir != nil { // the type checked it
				vol.EmptyDir.SizeLimit = &q
			}
		}
	}
	if vol.Secret != nil && vol.Secret.SecretName == "" || vol.ConfigMap != nil && vol.ConfigMap.Name == "" {
		// The parameters that name this volume's source: a required one was reported missing already.
		var namers []string
		for _, p := range e.Parameters {
			volName, field, _ := catalog.ParseSets(p.Sets)
			if volName != v.Name || field != "secretName" && field != "configMapName" {
				continue
			}
			if p.Required {
				return
			}
			namers = append(namers, e.AnnotationPrefix()+e.ParamName(p))
		}
		if len(namers) == 0 {
			b.problem("sidecar %s: volume %s has no source name and no parameter names it (a catalog entry error)", e.Name, v.Name)
			return
		}
		b.problem("sidecar %s: volume %s has no source name: set the annotation %s", e.Name, v.Name, strings.Join(namers, " or "))
		return
	}
	if !hasVolume(b.pod, v.Name) {
		b.pod.Spec.Volumes = append(b.pod.Spec.Volumes, vol)
	}
	if !hasMount(c, v.Name) {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: v.Name, MountPath: v.MountPath, ReadOnly: v.ReadOnly})
	}
	if appPath == "" {
		return
	}
	if onlyKey != "" && len(only) == 0 {
		b.problem("annotation %s=%q: want a comma-separated list of app container names", onlyKey, onlyValue)
		return
	}
	if only != nil {
		var apps []string
		for _, c := range b.pod.Spec.Containers {
			if _, isSidecar := b.cfg.Catalog.Get(c.Name); !isSidecar {
				apps = append(apps, c.Name)
			}
		}
		for _, name := range only {
			if !slices.Contains(apps, name) {
				b.problem("annotation %s=%q: no app container %q in the pod; its app containers: %s", onlyKey, onlyValue, name, strings.Join(apps, ", "))
			}
		}
	}
	for i := range b.pod.Spec.Containers {
		app := &b.pod.Spec.Containers[i]
		if _, isSidecar := b.cfg.Catalog.Get(app.Name); isSidecar || hasMount(app, v.Name) {
			continue
		}
		if only != nil && !slices.Contains(only, app.Name) {
			continue
		}
		if m := mountAt(app, appPath); m != nil {
			hint := "choose another path with the annotation " + e.AnnotationPrefix() + "mount-path"
			if appPathKey != "" {
				hint = "choose another path in " + appPathKey
			}
			b.problem("container %s already mounts volume %s at %s, where %s would mount its volume %s; %s", app.Name, m.Name, appPath, e.Name, v.Name, hint)
			continue
		}
		app.VolumeMounts = append(app.VolumeMounts, corev1.VolumeMount{Name: v.Name, MountPath: appPath, ReadOnly: v.AppReadOnly})
	}
}

// commit puts the pending sidecars into the pod. In native mode it also keeps Outrigger's sidecars where
// their catalog order says among the init containers, whoever added the others and whenever: the "first"
// ones before every other init container (the app's own and other injectors', which may need them), the
// "last" ones after, each group in the order injected, so that a reinvocation after another webhook
// prepended its init container moves ours back. It reports whether the init containers were reordered.
// In containers mode the sidecars are appended after the app containers.
func (b *builder) commit(ours []string) bool {
	if b.mode != config.ModeNative {
		b.pod.Spec.Containers = append(b.pod.Spec.Containers, b.pending...)
		return false
	}
	var first, others, last []corev1.Container
	place := func(c corev1.Container, mine bool) {
		e, known := b.cfg.Catalog.Get(c.Name)
		switch {
		case !mine || !known:
			others = append(others, c)
		case e.Last():
			last = append(last, c)
		default:
			first = append(first, c)
		}
	}
	for _, c := range b.pod.Spec.InitContainers {
		place(c, slices.Contains(ours, c.Name))
	}
	before := names(b.pod.Spec.InitContainers)
	for _, c := range b.pending {
		place(c, true)
	}
	b.pod.Spec.InitContainers = append(append(first, others...), last...)
	if len(b.pod.Spec.InitContainers) == 0 {
		b.pod.Spec.InitContainers = nil
	}
	return len(b.pending) == 0 && !slices.Equal(before, names(b.pod.Spec.InitContainers))
}

func names(list []corev1.Container) []string {
	out := make([]string, len(list))
	for i, c := range list {
		out[i] = c.Name
	}
	return out
}

// signalAsAppUID lets a sidecar that signals the app's processes run as the app's UID. The kernel refuses a
// signal to another UID's process without CAP_KILL, which Outrigger never adds (Pod Security restricted
// forbids it), and every sidecar otherwise runs as a UID of its own. The app's UID is known only from the
// pod's or the container's runAsUser: when one comes from an image, or the app containers disagree, or
// the app runs as root, the sidecar keeps its own UID and a warning says what to set.
func (b *builder) signalAsAppUID(e *catalog.Entry, c *corev1.Container) {
	if c.SecurityContext == nil || c.SecurityContext.RunAsUser == nil {
		return
	}
	own := *c.SecurityContext.RunAsUser
	var uids []int64
	var known, fromImage []string
	for _, app := range b.pod.Spec.Containers {
		if _, sidecar := b.cfg.Catalog.Get(app.Name); sidecar {
			continue // one of Outrigger's, from an earlier invocation in containers mode
		}
		uid := (*int64)(nil)
		if b.pod.Spec.SecurityContext != nil {
			uid = b.pod.Spec.SecurityContext.RunAsUser
		}
		if app.SecurityContext != nil && app.SecurityContext.RunAsUser != nil {
			uid = app.SecurityContext.RunAsUser
		}
		if uid == nil {
			fromImage = append(fromImage, app.Name)
			continue
		}
		known = append(known, fmt.Sprintf("%s (UID %d)", app.Name, *uid))
		if !slices.Contains(uids, *uid) {
			uids = append(uids, *uid)
		}
	}
	switch {
	case len(fromImage) > 0:
		b.warnings = append(b.warnings, fmt.Sprintf("outrigger: %s signals the app's processes, but the UID of %s comes from its image, which the injector cannot see: %s runs as its own UID %d, and the kernel refuses a signal to another UID without CAP_KILL (Outrigger never adds it; Pod Security restricted forbids it); set runAsUser on the pod or the container, and %s runs as that UID",
			e.Name, strings.Join(fromImage, ", "), e.Name, own, e.Name))
	case len(uids) > 1 || len(uids) == 1 && uids[0] == 0:
		b.warnings = append(b.warnings, fmt.Sprintf("outrigger: %s signals the app's processes, but the app containers run as %s: it can take one non-root UID, not several or root, and the kernel refuses a signal to another UID without CAP_KILL (Outrigger never adds it; Pod Security restricted forbids it); run them as one non-root UID or reload another way (%s's parameters)",
			e.Name, strings.Join(known, ", "), e.Name))
	case len(uids) == 1:
		c.SecurityContext.RunAsUser = &uids[0]
		var readable []string
		for _, m := range c.VolumeMounts {
			for _, v := range b.pod.Spec.Volumes {
				// A projected token is the pod's service account's, which the app containers have anyway
				// unless the pod opts out of it.
				optedOut := b.pod.Spec.AutomountServiceAccountToken != nil && !*b.pod.Spec.AutomountServiceAccountToken
				if v.Name == m.Name && (v.Secret != nil || v.Projected != nil && optedOut) {
					readable = append(readable, v.Name)
				}
			}
		}
		if len(readable) > 0 {
			b.warnings = append(b.warnings, fmt.Sprintf("outrigger: %s runs as the app's UID %d to signal it, so the app can read its volumes %s through the shared PID namespace (/proc/<pid>/root); reload another way (%s's parameters) to keep them from the app",
				e.Name, uids[0], strings.Join(readable, ", "), e.Name))
		}
	}
}

// warnPortConflicts warns when the sidecar declares a port another container declares too: one of them
// would fail to bind in the shared network namespace.
func (b *builder) warnPortConflicts(c *corev1.Container) {
	lists := [][]corev1.Container{b.pod.Spec.InitContainers, b.pod.Spec.Containers, b.pending}
	for _, p := range c.Ports {
		for _, list := range lists {
			for _, other := range list {
				for _, op := range other.Ports {
					if op.ContainerPort == p.ContainerPort && (op.Protocol == p.Protocol || op.Protocol == "" || p.Protocol == "") {
						b.warnings = append(b.warnings, fmt.Sprintf("outrigger: %s listens on port %d, which container %s declares too; move one of them (see `outrigger sidecars` for %s's port parameters)",
							c.Name, p.ContainerPort, other.Name, c.Name))
					}
				}
			}
		}
	}
}

// EnvLiteral is v written so that the sidecar's environment receives exactly v. The kubelet expands
// $(VAR) in an env value to another variable's value and turns $$ into $, so an annotation such as
// "pa$$word" or "echo $(HOME)" would reach the sidecar changed; every $ is doubled, which the kubelet
// turns back into one. Parameter values are data, never references: a catalog entry that wants a
// reference writes it in its container template, which is left as written.
func EnvLiteral(v string) string { return strings.ReplaceAll(v, "$", "$$") }

// setEnv sets name=value in c, replacing a template value (such as a downward-API default) of that name.
func setEnv(c *corev1.Container, name, value string) {
	for i := range c.Env {
		if c.Env[i].Name == name {
			c.Env[i] = corev1.EnvVar{Name: name, Value: value}
			return
		}
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
}

// movePort follows a port parameter: when the parameter's default is one of the container's ports, a new
// value moves that containerPort and every probe that targets it, so that changing, say, STATUS_PORT keeps
// the probes working.
func movePort(c *corev1.Container, p catalog.Parameter, value string) {
	if p.Type != "port" && p.Type != "host-port" {
		return
	}
	from, to := PortOf(p.Default), PortOf(value)
	if from == 0 || to == 0 || from == to {
		return
	}
	for i := range c.Ports {
		if c.Ports[i].ContainerPort == int32(from) {
			c.Ports[i].ContainerPort = int32(to)
		}
	}
	for _, probe := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
		if probe == nil {
			continue
		}
		if h := probe.HTTPGet; h != nil && h.Port.Type == intstr.Int && h.Port.IntValue() == from {
			h.Port = intstr.FromInt32(int32(to))
		}
		if s := probe.TCPSocket; s != nil && s.Port.Type == intstr.Int && s.Port.IntValue() == from {
			s.Port = intstr.FromInt32(int32(to))
		}
	}
}

// PortOf returns the port of "8443", ":8080" or "host:8080", or 0 (a port parameter's value, as movePort reads it).
func PortOf(s string) int {
	if _, port, err := net.SplitHostPort(s); err == nil {
		s = port
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0
	}
	return n
}

func hasVolume(pod *corev1.Pod, name string) bool {
	for _, v := range pod.Spec.Volumes {
		if v.Name == name {
			return true
		}
	}
	return false
}

func hasMount(c *corev1.Container, volume string) bool {
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return true
		}
	}
	return false
}

func mountAt(c *corev1.Container, path string) *corev1.VolumeMount {
	for i, m := range c.VolumeMounts {
		if strings.TrimSuffix(m.MountPath, "/") == strings.TrimSuffix(path, "/") {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}
