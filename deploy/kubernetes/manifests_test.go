// Package kubernetes holds sluice's Kubernetes manifests, a kustomize base
// (kustomization.yaml). Its tests check them offline, with no cluster and
// no kubectl (`make deploy-check`):
//
//   - every manifest file, document by document, and every object the
//     kustomization builds (with kustomize's own library) is decoded
//     strictly into its k8s.io/api type, so a misspelt or duplicated field
//     or a value of the wrong type fails, named by file, object and path;
//   - the objects agree with each other and with sluice.toml (rules_test.go):
//     probes on the admin listener, ports, stop timing, the PROXY protocol
//     settings of the load balancer, selectors, the security context (the
//     pod is evaluated against Pod Security "restricted" by the API
//     server's own code), resources;
//   - sluice -check accepts sluice.toml as the pod sees it, with the
//     ConfigMap and Secret files where the volume mounts put them
//     (sluicecheck_test.go).
//
// It is a module of its own (go.mod beside this file), so that the main
// module and its `go vet ./...` do not depend on the Kubernetes libraries.
package kubernetes

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// newDecoder decodes objects of the kinds the manifests use into their
// k8s.io/api types, strictly: an unknown or duplicated field, or a value
// of the wrong type, is an error that names the field's path. A kind or
// apiVersion it does not know (a misspelt kind, a removed API such as
// policy/v1beta1) is an error too.
func newDecoder() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme,
		appsv1.AddToScheme,
		policyv1.AddToScheme,
		networkingv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// decodeObject decodes one YAML document strictly. The decoder returns a
// strict error beside a usable object; either kind of error fails here.
func decodeObject(dec runtime.Decoder, doc []byte) (runtime.Object, error) {
	obj, _, err := dec.Decode(doc, nil, nil)
	if err != nil {
		return nil, err
	}
	return obj, nil
}

// describeDoc names a document by its kind and name, read loosely, for an
// error message about a document that did not decode.
func describeDoc(doc []byte) string {
	var head struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil || head.Kind == "" {
		return "an object"
	}
	return head.Kind + " " + head.Metadata.Name
}

// splitDocuments returns the non-empty YAML documents of a stream.
func splitDocuments(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, err
		}
		if s := strings.TrimSpace(string(j)); s == "null" || s == "" {
			continue // only comments
		}
		docs = append(docs, doc)
	}
}

// readKustomization reads kustomization.yaml strictly (kustomize itself
// rejects unknown fields but not duplicated ones).
func readKustomization(t *testing.T) types.Kustomization {
	t.Helper()
	data, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k types.Kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	return k
}

// The objects the kustomization builds, by kind.
type manifests struct {
	deployment     *appsv1.Deployment
	services       []*corev1.Service
	configMaps     map[string]*corev1.ConfigMap
	secrets        map[string]*corev1.Secret
	pdbs           []*policyv1.PodDisruptionBudget
	netpols        []*networkingv1.NetworkPolicy
	accounts       map[string]*corev1.ServiceAccount
	namespaces     []*corev1.Namespace
	namespacedObjs []runtime.Object
}

// build runs the kustomization in dir with kustomize's library, as
// `kubectl apply -k` would, and decodes every object strictly.
func build(t *testing.T, fs filesys.FileSystem, dir string) *manifests {
	t.Helper()
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	m := &manifests{
		configMaps: map[string]*corev1.ConfigMap{},
		secrets:    map[string]*corev1.Secret{},
		accounts:   map[string]*corev1.ServiceAccount{},
	}
	dec := newDecoder()
	for _, r := range resources.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		obj, err := decodeObject(dec, doc)
		if err != nil {
			t.Errorf("kustomize build %s: %s %s: %v", dir, r.GetKind(), r.GetName(), err)
			continue
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			if m.deployment != nil {
				t.Errorf("two Deployments: %s and %s; these checks expect one", m.deployment.Name, o.Name)
			}
			m.deployment = o
		case *corev1.Service:
			m.services = append(m.services, o)
		case *corev1.ConfigMap:
			m.configMaps[o.Name] = o
		case *corev1.Secret:
			m.secrets[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			m.pdbs = append(m.pdbs, o)
		case *networkingv1.NetworkPolicy:
			m.netpols = append(m.netpols, o)
		case *corev1.ServiceAccount:
			m.accounts[o.Name] = o
		case *corev1.Namespace:
			m.namespaces = append(m.namespaces, o)
			continue
		default:
			t.Errorf("kustomize build %s: %T %s: a kind these checks do not look at", dir, obj, r.GetName())
		}
		m.namespacedObjs = append(m.namespacedObjs, obj)
	}
	if m.deployment == nil {
		t.Fatalf("kustomize build %s: no Deployment", dir)
	}
	return m
}

func buildBase(t *testing.T) *manifests {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	return build(t, filesys.MakeFsOnDisk(), dir)
}

// TestStrictDecoding shows that the decoder these checks rely on does
// refuse what a careless edit produces, so that a passing check means
// something.
func TestStrictDecoding(t *testing.T) {
	const good = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: x
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
        - name: c
          image: i
          readinessProbe:
            httpGet: {path: /readyz, port: 9090}
`
	dec := newDecoder()
	if _, err := decodeObject(dec, []byte(good)); err != nil {
		t.Fatalf("a valid Deployment: %v", err)
	}
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"misspelt field", "readinessProbe:", "readinesProbe:", `unknown field "spec.template.spec.containers[0].readinesProbe"`},
		{"field at the wrong level", "          image: i\n", "          image: i\n          port: 443\n", `unknown field "spec.template.spec.containers[0].port"`},
		{"duplicated field", "          image: i\n", "          image: i\n          image: j\n", `key "image" already set in map`},
		{"wrong type", "name: c", "name: [c]", "cannot unmarshal array"},
		{"unknown kind", "kind: Deployment", "kind: Deploymnet", `no kind "Deploymnet" is registered`},
		{"removed apiVersion", "apiVersion: apps/v1", "apiVersion: extensions/v1beta1", `no kind "Deployment" is registered for version "extensions/v1beta1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(good, tc.old, tc.new, 1)
			if doc == good {
				t.Fatalf("the case does not change the document")
			}
			_, err := decodeObject(dec, []byte(doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestManifestFiles decodes every document of every file the
// kustomization lists, so that an error names the file.
func TestManifestFiles(t *testing.T) {
	k := readKustomization(t)
	if len(k.Resources) == 0 {
		t.Fatal("kustomization.yaml lists no resources")
	}
	dec := newDecoder()
	for _, file := range k.Resources {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Errorf("kustomization.yaml: resources: %v", err)
			continue
		}
		docs, err := splitDocuments(data)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		for i, doc := range docs {
			obj, err := decodeObject(dec, doc)
			if err != nil {
				t.Errorf("%s: document %d (%s): %v", file, i+1, describeDoc(doc), err)
				continue
			}
			if a, err := meta.Accessor(obj); err == nil && a.GetName() == "" {
				t.Errorf("%s: document %d (%s): no metadata.name", file, i+1, describeDoc(doc))
			}
		}
	}
}

// TestBuild builds the kustomization and decodes what comes out: the
// generated ConfigMap, and every object after kustomize's edits.
func TestBuild(t *testing.T) {
	m := buildBase(t)
	if len(m.configMaps) != 1 {
		t.Errorf("%d ConfigMaps built, want 1 (sluice.toml)", len(m.configMaps))
	}
	if len(m.secrets) != 0 {
		t.Errorf("the base builds %d Secrets: it must not carry keys (README.md: create them)", len(m.secrets))
	}
	for _, obj := range m.namespacedObjs {
		a, _ := meta.Accessor(obj)
		if a.GetNamespace() == "" {
			t.Errorf("%T %s has no namespace", obj, a.GetName())
		}
	}
	t.Logf("built %d objects", len(m.namespacedObjs)+len(m.namespaces))
}
