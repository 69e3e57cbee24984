// Command ingestor is stage 3 of the IoT pipeline: a build of the Benthos stream
// processor that reads validated readings from Kafka, stores them in InfluxDB and
// reports what it cannot store on the pipeline's error topic.
package main

import (
	"context"
	"os"

	"github.com/redpanda-data/benthos/v4/public/service"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"

	_ "github.com/preservarium/iot-ingestor/inputs"
	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
	"github.com/preservarium/iot-ingestor/metrics"
	_ "github.com/preservarium/iot-ingestor/outputs"
	_ "github.com/preservarium/iot-ingestor/processors"
)

// Version, when set at build time with -ldflags "-X main.Version=...", is what --version
// prints; left empty, the version comes from the build info (see buildVersion).
var Version = ""

func main() {
	setHelpTemplate()
	service.RunCLI(context.Background(), cliOptions()...)
}

// cliOptions is how this binary sets up the engine's CLI; the tests run the same options.
func cliOptions() []service.CLIOptFunc {
	version, date := buildVersion(Version)
	return []service.CLIOptFunc{
		service.CLIOptSetBinaryName("ingestor"),
		service.CLIOptSetProductName("IoT ingestor"),
		service.CLIOptSetVersion(version, date),
		service.CLIOptAddCommand(devbroker.Command()),
		service.CLIOptAddCommand(docsCommand(service.GlobalEnvironment())),
		service.CLIOptOnConfigParse(func(*service.ParsedConfig) error {
			return applyRuntimeEnv(os.LookupEnv)
		}),
		// ingestor_ready on /metrics reads the readiness of the stream the engine runs; the
		// summary follows the stream across a config reload (`run -w`).
		service.CLIOptOnStreamStart(func(s *service.RunningStreamSummary) error {
			metrics.SetReadiness(func() bool { return streamReady(s.ConnectionStatuses()) })
			return nil
		}),
	}
}
