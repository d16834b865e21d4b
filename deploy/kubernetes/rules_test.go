package kubernetes

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// Margin of terminationGracePeriodSeconds over grace + drain_timeout: sluice
// waits up to 2 s for its last log lines after the drain.
const stopMargin = 10 * time.Second

// Memory the pod's limit must allow per connection of max_connections,
// and beyond them. The README's "Fleets" plans 24 KiB a connection:
// sluice's 10.6 to 12.1 KiB of RSS, the two sockets' 7.8 KiB of kernel
// slab (which cgroup v2 charges to the pod), and headroom.
const (
	memoryPerConn = 24 << 10
	memoryBase    = 64 << 20
)

func sluiceContainer(t *testing.T, m *manifests) *corev1.Container {
	t.Helper()
	cs := m.deployment.Spec.Template.Spec.Containers
	for i := range cs {
		if cs[i].Name == "sluice" {
			return &cs[i]
		}
	}
	t.Fatalf("Deployment %s: no container named sluice", m.deployment.Name)
	return nil
}

// fileSource is where a file in the container comes from.
type fileSource struct {
	kind  string // "configMap" or "secret"
	name  string // the ConfigMap's or Secret's name
	key   string
	mount corev1.VolumeMount
	vol   corev1.Volume
}

// resolveFile finds the volume mount that puts file p in container c, and
// the ConfigMap or Secret key it comes from, as the kubelet would lay the
// volume out.
func resolveFile(m *manifests, c *corev1.Container, p string) (fileSource, error) {
	var best *corev1.VolumeMount
	var rel string
	for i, vm := range c.VolumeMounts {
		mp := strings.TrimSuffix(vm.MountPath, "/")
		var r string
		switch {
		case p == mp && vm.SubPath != "":
			r = vm.SubPath
		case strings.HasPrefix(p, mp+"/"):
			r = path.Join(vm.SubPath, strings.TrimPrefix(p, mp+"/"))
		default:
			continue
		}
		if best == nil || len(mp) > len(strings.TrimSuffix(best.MountPath, "/")) {
			best, rel = &c.VolumeMounts[i], r
		}
	}
	if best == nil {
		return fileSource{}, fmt.Errorf("no volume is mounted there (mounts: %s)", mountList(c))
	}
	var vol *corev1.Volume
	for i, v := range m.deployment.Spec.Template.Spec.Volumes {
		if v.Name == best.Name {
			vol = &m.deployment.Spec.Template.Spec.Volumes[i]
		}
	}
	if vol == nil {
		return fileSource{}, fmt.Errorf("volume mount %s names no volume", best.Name)
	}
	src := fileSource{mount: *best, vol: *vol}
	var err error
	switch {
	case vol.ConfigMap != nil:
		src.kind, src.name = "configMap", vol.ConfigMap.Name
		src.key, err = itemKey(vol.ConfigMap.Items, rel)
	case vol.Secret != nil:
		src.kind, src.name = "secret", vol.Secret.SecretName
		src.key, err = itemKey(vol.Secret.Items, rel)
	case vol.Projected != nil:
		err = fmt.Errorf("projected volume %s: not handled by these checks", vol.Name)
	default:
		err = fmt.Errorf("volume %s is neither a ConfigMap nor a Secret", vol.Name)
	}
	if err != nil {
		return fileSource{}, fmt.Errorf("volume %s mounted at %s: %w", vol.Name, best.MountPath, err)
	}
	return src, nil
}

// itemKey is the key that the kubelet writes at rel in a ConfigMap or
// Secret volume: with items, only those; without, every key at the top.
func itemKey(items []corev1.KeyToPath, rel string) (string, error) {
	if len(items) == 0 {
		if strings.Contains(rel, "/") {
			return "", fmt.Errorf("%s: keys are files at the volume's top", rel)
		}
		return rel, nil
	}
	var paths []string
	for _, it := range items {
		if path.Clean(it.Path) == rel {
			return it.Key, nil
		}
		paths = append(paths, it.Path)
	}
	return "", fmt.Errorf("%s is not among its items (%s)", rel, strings.Join(paths, ", "))
}

func mountList(c *corev1.Container) string {
	var s []string
	for _, vm := range c.VolumeMounts {
		s = append(s, vm.MountPath)
	}
	return strings.Join(s, ", ")
}

// containerPort resolves a Service or probe port, a number or a container
// port's name, to a port of c.
func containerPort(c *corev1.Container, p intstr.IntOrString) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("no container port is named %q", p.StrVal)
}

func hasContainerPort(c *corev1.Container, port int) bool {
	for _, cp := range c.Ports {
		if int(cp.ContainerPort) == port && (cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP) {
			return true
		}
	}
	return false
}

func selects(sel *metav1.LabelSelector, podLabels map[string]string) (bool, error) {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false, err
	}
	return !s.Empty() && s.Matches(labels.Set(podLabels)), nil
}

// TestRules checks that the built objects agree with each other and with
// sluice.toml.
func TestRules(t *testing.T) {
	m := buildBase(t)
	d := m.deployment
	pod := &d.Spec.Template
	c := sluiceContainer(t, m)
	_, _, cfg := loadConfig(t, m)

	t.Run("pod security restricted", func(t *testing.T) {
		eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
		if err != nil {
			t.Fatal(err)
		}
		lv := psapi.LevelVersion{Level: psapi.LevelRestricted, Version: psapi.LatestVersion()}
		res := policy.AggregateCheckResults(eval.EvaluatePod(lv, &pod.ObjectMeta, &pod.Spec))
		if !res.Allowed {
			t.Errorf("Deployment %s: Pod Security %q would refuse its pods: %s", d.Name, lv.Level, res.ForbiddenDetail())
		}
		for _, ns := range m.namespaces {
			if got := ns.Labels[psapi.EnforceLevelLabel]; got != string(psapi.LevelRestricted) {
				t.Errorf("Namespace %s: label %s is %q, want %q", ns.Name, psapi.EnforceLevelLabel, got, psapi.LevelRestricted)
			}
		}
	})

	t.Run("security context", func(t *testing.T) {
		ps := pod.Spec.SecurityContext
		sc := c.SecurityContext
		if ps == nil || sc == nil {
			t.Fatalf("Deployment %s: the pod and container %s both need a securityContext", d.Name, c.Name)
		}
		if ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
			t.Errorf("Deployment %s: spec.template.spec.securityContext.runAsNonRoot must be true", d.Name)
		}
		// A numeric UID: runAsNonRoot cannot verify a user name, and the
		// image's USER is numeric too (Dockerfile).
		if ps.RunAsUser == nil || *ps.RunAsUser == 0 {
			t.Errorf("Deployment %s: spec.template.spec.securityContext.runAsUser must be a non-zero UID", d.Name)
		}
		if ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("Deployment %s: spec.template.spec.securityContext.seccompProfile.type must be RuntimeDefault", d.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s: securityContext.allowPrivilegeEscalation must be false", c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s: securityContext.readOnlyRootFilesystem must be true", c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("container %s: securityContext.privileged must not be true", c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("container %s: securityContext.capabilities.drop must be [ALL]", c.Name)
		} else {
			for _, cp := range sc.Capabilities.Add {
				if cp != "NET_BIND_SERVICE" {
					t.Errorf("container %s: securityContext.capabilities.add has %s: at most NET_BIND_SERVICE", c.Name, cp)
				}
			}
		}
		if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
			t.Errorf("Deployment %s: automountServiceAccountToken must be false: sluice uses no API", d.Name)
		}
		if pod.Spec.HostNetwork || pod.Spec.HostPID || pod.Spec.HostIPC {
			t.Errorf("Deployment %s: no host namespaces", d.Name)
		}
		for _, vm := range c.VolumeMounts {
			if !vm.ReadOnly {
				t.Errorf("container %s: volume mount %s at %s must be readOnly", c.Name, vm.Name, vm.MountPath)
			}
		}
		if sa := pod.Spec.ServiceAccountName; sa != "" && m.accounts[sa] == nil {
			t.Errorf("Deployment %s: serviceAccountName %s is not in the build", d.Name, sa)
		}
	})

	// A non-root process gets no capability from capabilities.add
	// (Kubernetes sets no ambient capabilities), so a port below 1024 needs
	// the pod's net.ipv4.ip_unprivileged_port_start.
	t.Run("privileged ports", func(t *testing.T) {
		start := 1024
		if ps := pod.Spec.SecurityContext; ps != nil {
			for _, s := range ps.Sysctls {
				if s.Name == "net.ipv4.ip_unprivileged_port_start" {
					v, err := strconv.Atoi(s.Value)
					if err != nil {
						t.Fatalf("Deployment %s: sysctl %s: %v", d.Name, s.Name, err)
					}
					start = v
				}
			}
		}
		for i, l := range cfg.Listeners {
			_, port, err := tcpPort(l.Address)
			if err != nil {
				t.Errorf("sluice.toml: listener[%d].address %q: %v", i, l.Address, err)
				continue
			}
			if port != 0 && port < start {
				t.Errorf("sluice.toml: listener[%d] binds port %d, but the pod's net.ipv4.ip_unprivileged_port_start is %d: "+
					"sluice runs as UID %d, and capabilities.add does not reach a non-root process", i, port, start, *pod.Spec.SecurityContext.RunAsUser)
			}
		}
	})

	t.Run("probes", func(t *testing.T) {
		host, adminPort, err := tcpPort(cfg.Admin.Address)
		if err != nil || adminPort == 0 {
			t.Fatalf("sluice.toml: [admin] address %q: the probes need a TCP admin listener (%v)", cfg.Admin.Address, err)
		}
		if host != "" && host != "0.0.0.0" && host != "::" {
			t.Errorf("sluice.toml: [admin] address %q: the kubelet probes the pod's IP, so listen on 0.0.0.0 or [::]", cfg.Admin.Address)
		}
		for _, p := range []struct {
			name  string
			probe *corev1.Probe
			path  string
		}{
			{"readinessProbe", c.ReadinessProbe, "/readyz"},
			{"livenessProbe", c.LivenessProbe, "/healthz"},
		} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("container %s: %s must be an httpGet of %s", c.Name, p.name, p.path)
				continue
			}
			g := p.probe.HTTPGet
			if g.Path != p.path {
				t.Errorf("container %s: %s.httpGet.path is %q, want %q", c.Name, p.name, g.Path, p.path)
			}
			if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
				t.Errorf("container %s: %s.httpGet.scheme is %s: the admin listener speaks HTTP", c.Name, p.name, g.Scheme)
			}
			port, err := containerPort(c, g.Port)
			if err != nil {
				t.Errorf("container %s: %s.httpGet.port: %v", c.Name, p.name, err)
			} else if port != adminPort {
				t.Errorf("container %s: %s.httpGet.port is %d, but sluice.toml's [admin] listens on %d", c.Name, p.name, port, adminPort)
			}
		}
		if !hasContainerPort(c, adminPort) {
			t.Errorf("container %s: no containerPort %d for sluice.toml's [admin]", c.Name, adminPort)
		}
	})

	t.Run("ports", func(t *testing.T) {
		listenerPorts := map[int]int{} // port: listener index
		for i, l := range cfg.Listeners {
			_, port, _ := tcpPort(l.Address)
			if port == 0 {
				continue
			}
			listenerPorts[port] = i
			if !hasContainerPort(c, port) {
				t.Errorf("container %s: no containerPort %d for sluice.toml's listener[%d] (%s)", c.Name, port, i, l.Address)
			}
		}
		_, adminPort, _ := tcpPort(cfg.Admin.Address)
		for _, cp := range c.Ports {
			if _, ok := listenerPorts[int(cp.ContainerPort)]; !ok && int(cp.ContainerPort) != adminPort {
				t.Errorf("container %s: containerPort %d (%s) is no listener of sluice.toml", c.Name, cp.ContainerPort, cp.Name)
			}
		}
		for _, s := range m.services {
			for _, sp := range s.Spec.Ports {
				tp := sp.TargetPort
				if tp.Type == intstr.Int && tp.IntVal == 0 {
					tp = intstr.FromInt32(sp.Port)
				}
				port, err := containerPort(c, tp)
				if err != nil {
					t.Errorf("Service %s: port %s: targetPort: %v", s.Name, sp.Name, err)
					continue
				}
				_, isListener := listenerPorts[port]
				switch {
				case s.Spec.Type == corev1.ServiceTypeLoadBalancer && !isListener:
					t.Errorf("Service %s: port %s sends to %d, which is no listener of sluice.toml (the admin port must not be public)", s.Name, sp.Name, port)
				case !isListener && port != adminPort:
					t.Errorf("Service %s: port %s sends to %d, neither a listener nor [admin] of sluice.toml", s.Name, sp.Name, port)
				}
			}
		}
		for _, np := range m.netpols {
			for _, rule := range np.Spec.Ingress {
				for _, p := range rule.Ports {
					if p.Port == nil {
						continue
					}
					if _, err := containerPort(c, *p.Port); err != nil {
						t.Errorf("NetworkPolicy %s: port: %v", np.Name, err)
					}
				}
			}
		}
	})

	t.Run("stop timing", func(t *testing.T) {
		var preStop time.Duration
		if lc := c.Lifecycle; lc != nil && lc.PreStop != nil {
			switch {
			case lc.PreStop.Sleep != nil:
				preStop = time.Duration(lc.PreStop.Sleep.Seconds) * time.Second
			default:
				t.Errorf("container %s: lifecycle.preStop must be a sleep: the image has no shell", c.Name)
			}
		}
		tgps := 30 * time.Second
		if s := pod.Spec.TerminationGracePeriodSeconds; s != nil {
			tgps = time.Duration(*s) * time.Second
		}
		need := preStop + cfg.Grace.Duration + cfg.drainTimeout() + stopMargin
		if tgps < need {
			t.Errorf("Deployment %s: terminationGracePeriodSeconds is %v, less than preStop sleep %v + grace %v + drain_timeout %v + %v: "+
				"the kubelet would SIGKILL sluice mid-drain", d.Name, tgps, preStop, cfg.Grace.Duration, cfg.drainTimeout(), stopMargin)
		}
		// The kubelet must see /readyz fail, and so take the pod out of
		// the serving endpoints, before the listener closes.
		rp := c.ReadinessProbe
		if rp != nil {
			period, failures := rp.PeriodSeconds, rp.FailureThreshold
			if period == 0 {
				period = 10
			}
			if failures == 0 {
				failures = 3
			}
			notReady := time.Duration(period*failures) * time.Second
			if preStop+cfg.Grace.Duration < notReady {
				t.Errorf("sluice.toml: grace %v (+ preStop %v) is shorter than the readiness probe needs to mark the pod not ready "+
					"(periodSeconds %d × failureThreshold %d): the listener would close while the pod still gets connections",
					cfg.Grace.Duration, preStop, period, failures)
			}
		}
		for _, s := range loadBalancers(m) {
			attrs := awsAttributes(s.Annotations[awsPrefix+"target-group-attributes"])
			if v, ok := attrs["deregistration_delay.timeout_seconds"]; ok {
				secs, err := strconv.Atoi(v)
				if err != nil {
					t.Errorf("Service %s: deregistration_delay.timeout_seconds %q: %v", s.Name, v, err)
				} else if time.Duration(secs)*time.Second < cfg.Grace.Duration+cfg.drainTimeout() {
					t.Errorf("Service %s: deregistration_delay.timeout_seconds %d is shorter than grace + drain_timeout (%v): "+
						"the NLB would drop connections sluice is still draining", s.Name, secs, cfg.Grace.Duration+cfg.drainTimeout())
				}
			}
		}
	})

	t.Run("proxy protocol", func(t *testing.T) {
		for _, s := range loadBalancers(m) {
			ann := s.Annotations
			proxy := ann[awsPrefix+"proxy-protocol"] == "*"
			attrs := awsAttributes(ann[awsPrefix+"target-group-attributes"])
			if attrs["proxy_protocol_v2.enabled"] == "true" {
				proxy = true
			}
			for _, sp := range s.Spec.Ports {
				tp := sp.TargetPort
				if tp.Type == intstr.Int && tp.IntVal == 0 {
					tp = intstr.FromInt32(sp.Port)
				}
				port, err := containerPort(c, tp)
				if err != nil {
					continue // reported under ports
				}
				for i, l := range cfg.Listeners {
					if _, lp, _ := tcpPort(l.Address); lp != port {
						continue
					}
					switch {
					case proxy && !l.AcceptProxy:
						t.Errorf("Service %s sends a PROXY header (%sproxy-protocol) to listener[%d], which has no accept_proxy: "+
							"sluice would take the header for the TLS handshake", s.Name, awsPrefix, i)
					case proxy && len(l.TrustedProxies) == 0:
						t.Errorf("sluice.toml: listener[%d]: accept_proxy needs trusted_proxies (the load balancer's addresses)", i)
					case !proxy && l.AcceptProxy:
						t.Errorf("sluice.toml: listener[%d] has accept_proxy, but Service %s sends no PROXY header "+
							"(no %sproxy-protocol: \"*\"): sluice would refuse every connection", i, s.Name, awsPrefix)
					}
				}
			}
			if proxy && attrs["preserve_client_ip.enabled"] == "true" {
				t.Errorf("Service %s: with preserve_client_ip.enabled=true connections come from the clients' addresses, "+
					"not the NLB's in trusted_proxies: sluice would refuse them", s.Name)
			}
			if hc := strings.ToLower(ann[awsPrefix+"healthcheck-protocol"]); proxy && (hc == "http" || hc == "https") {
				t.Errorf("Service %s: an HTTP health check with proxy protocol on gets a PROXY header too, "+
					"which sluice's admin listener does not read: use TCP on the traffic port", s.Name)
			}
			if s.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
				t.Errorf("Service %s: externalTrafficPolicy must be Local: without a PROXY header (GKE, AKS) the client's address survives only so", s.Name)
			}
		}
	})

	t.Run("load balancer annotations", func(t *testing.T) {
		for _, s := range m.services {
			for k, v := range s.Annotations {
				if !strings.HasPrefix(k, awsPrefix) {
					continue
				}
				name := strings.TrimPrefix(k, awsPrefix)
				if !awsAnnotations[name] && !strings.HasPrefix(name, "listener-attributes.") {
					t.Errorf("Service %s: annotation %s is not one the AWS Load Balancer Controller documents "+
						"(a misspelt one is ignored without a word); if it is new, add it to awsAnnotations in rules_test.go", s.Name, k)
					continue
				}
				if ok, want := awsValueOK(name, v); !ok {
					t.Errorf("Service %s: annotation %s: %q, want %s", s.Name, k, v, want)
				}
			}
		}
	})

	t.Run("selectors", func(t *testing.T) {
		podLabels := pod.Labels
		if ok, err := selects(d.Spec.Selector, podLabels); err != nil || !ok {
			t.Errorf("Deployment %s: spec.selector does not select its pod template's labels %v (%v)", d.Name, podLabels, err)
		}
		for _, s := range m.services {
			if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(podLabels)) {
				t.Errorf("Service %s: selector %v does not select the pods (labels %v)", s.Name, s.Spec.Selector, podLabels)
			}
		}
		for _, p := range m.pdbs {
			if ok, err := selects(p.Spec.Selector, podLabels); err != nil || !ok {
				t.Errorf("PodDisruptionBudget %s: selector does not select the pods (labels %v)", p.Name, podLabels)
			}
		}
		for _, np := range m.netpols {
			if ok, err := selects(&np.Spec.PodSelector, podLabels); err != nil || !ok {
				t.Errorf("NetworkPolicy %s: podSelector does not select the pods (labels %v)", np.Name, podLabels)
			}
		}
		for i, tsc := range pod.Spec.TopologySpreadConstraints {
			if ok, err := selects(tsc.LabelSelector, podLabels); err != nil || !ok {
				t.Errorf("Deployment %s: topologySpreadConstraints[%d] (%s) does not select the pods", d.Name, i, tsc.TopologyKey)
			}
		}
	})

	t.Run("availability", func(t *testing.T) {
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		if replicas < 2 {
			t.Errorf("Deployment %s: %d replica: a rollout or a node drain would stop the only one", d.Name, replicas)
		}
		ru := d.Spec.Strategy.RollingUpdate
		if d.Spec.Strategy.Type != "RollingUpdate" || ru == nil || ru.MaxUnavailable == nil ||
			ru.MaxUnavailable.String() != "0" && ru.MaxUnavailable.String() != "0%" {
			t.Errorf("Deployment %s: strategy must be RollingUpdate with maxUnavailable 0: a pod is stopped only once its replacement serves", d.Name)
		}
		if len(m.pdbs) == 0 {
			t.Errorf("no PodDisruptionBudget")
		}
		for _, p := range m.pdbs {
			switch {
			case p.Spec.MaxUnavailable != nil:
				if v, err := intstr.GetScaledValueFromIntOrPercent(p.Spec.MaxUnavailable, int(replicas), true); err != nil || v < 1 || v >= int(replicas) {
					t.Errorf("PodDisruptionBudget %s: maxUnavailable %s of %d replicas: want at least 1 (or node drains block) and fewer than all", p.Name, p.Spec.MaxUnavailable, replicas)
				}
			case p.Spec.MinAvailable != nil:
				if v, err := intstr.GetScaledValueFromIntOrPercent(p.Spec.MinAvailable, int(replicas), true); err != nil || v < 1 || v >= int(replicas) {
					t.Errorf("PodDisruptionBudget %s: minAvailable %s of %d replicas: want at least 1 and fewer than all (or node drains block)", p.Name, p.Spec.MinAvailable, replicas)
				}
			default:
				t.Errorf("PodDisruptionBudget %s: neither maxUnavailable nor minAvailable", p.Name)
			}
		}
		keys := map[string]bool{}
		for _, tsc := range pod.Spec.TopologySpreadConstraints {
			keys[tsc.TopologyKey] = true
		}
		if aff := pod.Spec.Affinity; aff != nil && aff.PodAntiAffinity != nil {
			for _, term := range aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
				keys[term.TopologyKey] = true
			}
			for _, term := range aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
				keys[term.PodAffinityTerm.TopologyKey] = true
			}
		}
		for _, k := range []string{"kubernetes.io/hostname", "topology.kubernetes.io/zone"} {
			if !keys[k] {
				t.Errorf("Deployment %s: pods are not spread over %s (topologySpreadConstraints or podAntiAffinity)", d.Name, k)
			}
		}
	})

	t.Run("resources", func(t *testing.T) {
		r := c.Resources
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := r.Requests[name]; !ok {
				t.Errorf("container %s: no resources.requests.%s", c.Name, name)
			}
		}
		limit, ok := r.Limits[corev1.ResourceMemory]
		if !ok {
			t.Fatalf("container %s: no resources.limits.memory", c.Name)
		}
		if req, ok := r.Requests[corev1.ResourceMemory]; ok && req.Cmp(limit) > 0 {
			t.Errorf("container %s: memory request %s above its limit %s", c.Name, req.String(), limit.String())
		}
		conns := 0
		for i, l := range cfg.Listeners {
			if l.MaxConnections == 0 {
				t.Errorf("sluice.toml: listener[%d] has no max_connections: its connections could outgrow the pod's memory limit %s "+
					"and the OOM killer would drop all of them at once", i, limit.String())
			}
			conns += l.MaxConnections
		}
		want := resource.NewQuantity(int64(conns)*memoryPerConn+memoryBase, resource.BinarySI)
		if limit.Cmp(*want) < 0 {
			t.Errorf("container %s: memory limit %s is below %s for sluice.toml's %d max_connections (%d KiB each + %d MiB)",
				c.Name, limit.String(), want.String(), conns, memoryPerConn>>10, memoryBase>>20)
		}
	})

	t.Run("files", func(t *testing.T) {
		for _, f := range cfg.files() {
			src, err := resolveFile(m, c, f.path)
			if err != nil {
				t.Errorf("sluice.toml: %s = %q: %v", f.key, f.path, err)
				continue
			}
			if f.secret && src.kind != "secret" {
				t.Errorf("sluice.toml: %s = %q comes from %s %s: private keys and ticket keys belong in a Secret", f.key, f.path, src.kind, src.name)
			}
			if src.kind == "secret" {
				if src.vol.Secret.Optional != nil && *src.vol.Secret.Optional {
					t.Errorf("volume %s: Secret %s is optional: the pod would start without %s", src.vol.Name, src.name, f.path)
				}
				if keys, ok := documentedSecrets[src.name]; !ok || !slices.Contains(keys, src.key) {
					t.Errorf("sluice.toml: %s = %q is key %q of Secret %s, which README.md does not tell how to create "+
						"(documentedSecrets in sluicecheck_test.go)", f.key, f.path, src.key, src.name)
				}
			}
			if src.mount.SubPath != "" && src.kind == "secret" {
				t.Errorf("volume mount %s: a subPath mount of a Secret never sees the Secret change: mount the directory", src.mount.Name)
			}
		}
	})
}

// loadBalancers returns the Services of type LoadBalancer.
func loadBalancers(m *manifests) []*corev1.Service {
	var lbs []*corev1.Service
	for _, s := range m.services {
		if s.Spec.Type == corev1.ServiceTypeLoadBalancer {
			lbs = append(lbs, s)
		}
	}
	return lbs
}

const awsPrefix = "service.beta.kubernetes.io/aws-load-balancer-"

// awsAnnotations are the Service annotations of the AWS Load Balancer
// Controller (its docs/guide/service/annotations.md), without the prefix.
var awsAnnotations = map[string]bool{}

func init() {
	for _, name := range []string{
		"type", "nlb-target-type", "name", "internal", "scheme",
		"proxy-protocol", "ip-address-type",
		"access-log-enabled", "access-log-s3-bucket-name", "access-log-s3-bucket-prefix",
		"cross-zone-load-balancing-enabled",
		"ssl-cert", "ssl-ports", "ssl-negotiation-policy", "backend-protocol",
		"additional-resource-tags",
		"healthcheck-protocol", "healthcheck-port", "healthcheck-path",
		"healthcheck-healthy-threshold", "healthcheck-unhealthy-threshold",
		"healthcheck-timeout", "healthcheck-interval", "healthcheck-success-codes",
		"eip-allocations", "private-ipv4-addresses", "ipv6-addresses",
		"target-group-attributes", "subnets", "alpn-policy", "target-node-labels",
		"attributes", "security-groups", "manage-backend-security-group-rules",
		"security-group-prefix-lists",
	} {
		awsAnnotations[name] = true
	}
}

// awsValueOK checks the values the controller accepts from a short list.
func awsValueOK(name, v string) (bool, string) {
	oneOf := func(vals ...string) (bool, string) {
		return slices.Contains(vals, strings.ToLower(v)), "one of " + strings.Join(vals, ", ")
	}
	switch name {
	case "type":
		return oneOf("external", "nlb-ip")
	case "nlb-target-type":
		return oneOf("ip", "instance")
	case "scheme":
		return oneOf("internal", "internet-facing")
	case "proxy-protocol":
		return v == "*", `"*" (the only value)`
	case "healthcheck-protocol":
		return oneOf("tcp", "http", "https")
	case "healthcheck-interval", "healthcheck-timeout", "healthcheck-healthy-threshold", "healthcheck-unhealthy-threshold":
		_, err := strconv.Atoi(v)
		return err == nil, "an integer"
	case "healthcheck-port":
		_, err := strconv.Atoi(v)
		return err == nil || v == "traffic-port", `an integer or "traffic-port"`
	case "target-group-attributes", "attributes":
		for _, kv := range strings.Split(v, ",") {
			if k, _, ok := strings.Cut(kv, "="); !ok || strings.TrimSpace(k) == "" {
				return false, "key=value pairs separated by commas"
			}
		}
	}
	return true, ""
}

// awsAttributes parses "k1=v1,k2=v2".
func awsAttributes(s string) map[string]string {
	attrs := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			attrs[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return attrs
}
