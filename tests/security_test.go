package tests

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
	"github.com/preservarium/iot-ingestor/internal/testkit/devbrokertest"
	"github.com/preservarium/iot-ingestor/internal/testkit/influxtest"
)

// securedConfig derives, from config/ingestor.yaml, the pipeline with TLS (trusting caFile)
// and SASL SCRAM-SHA-256 on both Kafka clients and TLS to InfluxDB: the edit the README's
// "Security" section tells operators to make.
func securedConfig(t *testing.T, caFile string) string {
	t.Helper()
	b, err := os.ReadFile(shippedConfig)
	if err != nil {
		t.Fatal(err)
	}
	kafka := regexp.MustCompile(`(?m)^(\s*)client_id: ingestor$`)
	out := kafka.ReplaceAllString(string(b), `${1}client_id: ingestor
${1}tls:
${1}  enabled: true
${1}  root_cas_file: `+caFile+`
${1}sasl:
${1}  - mechanism: SCRAM-SHA-256
${1}    username: ${KAFKA_SASL_USERNAME:}
${1}    password: ${KAFKA_SASL_PASSWORD:}`)
	influx := regexp.MustCompile(`(?m)^(\s*)bucket: \$\{INFLUXDB_BUCKET:iot_data\}$`)
	out = influx.ReplaceAllString(out, `${1}bucket: $${INFLUXDB_BUCKET:iot_data}
${1}tls:
${1}  enabled: true
${1}  root_cas_file: `+caFile)
	if strings.Count(out, "SCRAM-SHA-256") != 2 || strings.Count(out, "root_cas_file") != 3 {
		t.Fatalf("config/ingestor.yaml changed shape; securedConfig could not place the TLS/SASL blocks")
	}
	path := filepath.Join(t.TempDir(), "ingestor-secured.yaml")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// kafkaTLSAndSCRAM are the client options of the test's own Kafka clients on a secured broker.
func kafkaTLSAndSCRAM(cfg *tls.Config, user, pass string) []kgo.Opt {
	return []kgo.Opt{
		kgo.DialTLSConfig(cfg),
		kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()),
	}
}

const (
	saslUser     = "ingestor"
	saslPassword = "sasl-Pa55-never-logged"
)

// TestTLSAndSCRAM runs the pipeline with TLS and SASL SCRAM to Kafka and TLS to a real
// InfluxDB (self-signed CA, authentication on): everything is stored and reported as without
// them, and neither the token nor the SASL password shows in the logs or /debug output.
func TestTLSAndSCRAM(t *testing.T) {
	start := time.Now()
	mat, err := devbroker.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, mat.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, mat.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	srvTLS, err := mat.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t}
	devbrokertest.Gate(t)
	s.opts = devbroker.Options{Partitions: 2, Topics: []string{inputTopic, errorTopic}, TLS: srvTLS,
		SASLUser: saslUser, SASLPass: saslPassword}
	if s.broker, err = devbroker.Start(s.opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.broker.Close)
	s.clientOpts = append(s.clientOpts, kafkaTLSAndSCRAM(mat.ClientConfig(), saslUser, saslPassword)...)
	s.influx = influxtest.Start(t, influxtest.Options{Auth: true, AdminPassword: "influx-T0ken-never-logged",
		TLSCertFile: certFile, TLSKeyFile: keyFile})
	s.influx.CreateDatabase(database)
	if !strings.HasPrefix(s.influx.URL(), "https://") {
		t.Fatalf("InfluxDB is not serving HTTPS: %s", s.influx.URL())
	}

	readings := generate(t, 21, 400, 0.10)
	p := s.startIngestorConfig(securedConfig(t, certFile), map[string]string{
		"KAFKA_SASL_USERNAME": saslUser,
		"KAFKA_SASL_PASSWORD": saslPassword,
	})
	p.waitStatus("/ready", 200, 30*time.Second)
	s.produce(readings)
	s.waitDrained(90 * time.Second)
	report(t, "tls-and-scram", s.verify(readings, nil), time.Since(start))

	for _, secret := range []string{saslPassword, s.influx.Token(), "influx-T0ken-never-logged"} {
		if p.logContains(secret) {
			t.Errorf("the ingestor log contains a secret (%q)", secret[:4]+"...")
		}
	}
}

// TestSecretsNeverShown: the token and the SASL password are absent from what `echo` prints,
// from the /debug config endpoint, and from the log and error of a refused token.
func TestSecretsNeverShown(t *testing.T) {
	const token = "influx-secret-T0KEN-9f8e7d"
	s := newStack(t, stackOptions{partitions: 1, influx: influxtest.Options{Auth: true}})
	cfg := securedConfig(t, "/dev/null")
	env := []string{"INFLUXDB_TOKEN=" + token, "KAFKA_SASL_PASSWORD=" + saslPassword}

	echo := exec.Command(binary(t), "echo", cfg)
	echo.Env = append(os.Environ(), env...)
	out, err := echo.CombinedOutput()
	if err != nil {
		t.Fatalf("ingestor echo: %v\n%s", err, out)
	}
	for _, secret := range []string{token, saslPassword} {
		if strings.Contains(string(out), secret) {
			t.Errorf("`ingestor echo` prints a secret (%q...)", secret[:4])
		}
	}

	// A refused token: the run logs the refusal, never the token, and /debug hides it.
	base, err := os.ReadFile(shippedConfig)
	if err != nil {
		t.Fatal(err)
	}
	withDebug := strings.Replace(string(base), "http:\n  enabled: true\n", "http:\n  enabled: true\n  debug_endpoints: true\n", 1)
	if withDebug == string(base) {
		t.Fatal("config/ingestor.yaml changed shape: could not enable debug_endpoints")
	}
	debugCfg := filepath.Join(t.TempDir(), "debug.yaml")
	if err := os.WriteFile(debugCfg, []byte(withDebug), 0o600); err != nil {
		t.Fatal(err)
	}
	p := s.startIngestorConfig(debugCfg, map[string]string{"INFLUXDB_TOKEN": token})
	deadline := time.Now().Add(30 * time.Second)
	for !p.logContains("401") && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if !p.logContains("401") {
		p.dumpLog(20)
		t.Fatalf("the ingestor did not log the refused token (401)")
	}
	if got := p.status("/ready"); got != 503 {
		t.Errorf("/ready answered %d with a refused token", got)
	}
	if p.logContains(token) {
		t.Errorf("the log contains the InfluxDB token")
	}
	for _, path := range []string{"/debug/config/json", "/debug/config/yaml"} {
		resp, err := http.Get("http://" + p.httpAddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s answered %d: the check would prove nothing", path, resp.StatusCode)
		}
		if strings.Contains(string(body), token) {
			t.Errorf("GET %s shows the InfluxDB token", path)
		}
	}
}

// TestBadConfigFailsAtStart: a bad value stops `ingestor lint` and `ingestor run` at start
// with a message naming the problem.
func TestBadConfigFailsAtStart(t *testing.T) {
	base, err := os.ReadFile(shippedConfig)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		edit    func(string) string
		env     map[string]string
		message string
	}{
		{"unknown field", func(c string) string {
			return strings.Replace(c, "      reading_to_point:\n", "      reading_to_point:\n        colour: blue\n", 1)
		}, nil, "colour"},
		{"bad InfluxDB URL", nil, map[string]string{"INFLUXDB_URL": "htp:/nowhere"}, "url"},
		{"bad duration", nil, map[string]string{"KAFKA_CONSUMER_POLL_TIMEOUT_S": "soon"}, "fetch_max_wait"},
		{"negative batch size", nil, map[string]string{"INFLUXDB_BATCH_SIZE": "-5"}, "count"},
		{"unknown precision", nil, map[string]string{"INFLUXDB_TIMESTAMP_PRECISION": "fortnight"}, "precision"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := string(base)
			if c.edit != nil {
				cfg = c.edit(cfg)
				if cfg == string(base) {
					t.Fatal("the edit did not apply: config/ingestor.yaml changed shape")
				}
			}
			path := filepath.Join(t.TempDir(), "bad.yaml")
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			env := os.Environ()
			for k, v := range c.env {
				env = append(env, k+"="+v)
			}
			env = append(env, "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1", "HTTP_ADDRESS=127.0.0.1:0")

			lint := exec.Command(binary(t), "lint", path)
			lint.Env = env
			lintOut, lintErr := lint.CombinedOutput()

			run := exec.Command(binary(t), "run", path)
			run.Env = env
			done := make(chan struct{})
			var runOut []byte
			var runErr error
			go func() { runOut, runErr = run.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = run.Process.Kill()
				<-done
				t.Fatalf("`ingestor run` kept running with a bad config:\n%s", runOut)
			}
			if runErr == nil {
				t.Errorf("`ingestor run` exited 0 with a bad config")
			}
			if !strings.Contains(strings.ToLower(string(runOut)), c.message) {
				t.Errorf("`ingestor run` did not name %q:\n%s", c.message, runOut)
			}
			if lintErr == nil && !strings.Contains(strings.ToLower(string(lintOut)), c.message) {
				t.Logf("lint passes this one (env values are checked when components start): %s", lintOut)
			}
		})
	}
}
