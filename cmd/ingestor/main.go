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
	"github.com/preservarium/iot-ingestor/internal/devbroker"
	_ "github.com/preservarium/iot-ingestor/metrics"
	_ "github.com/preservarium/iot-ingestor/outputs"
	_ "github.com/preservarium/iot-ingestor/processors"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

func main() {
	service.RunCLI(context.Background(),
		service.CLIOptSetBinaryName("ingestor"),
		service.CLIOptSetProductName("IoT ingestor"),
		service.CLIOptSetVersion(Version, ""),
		service.CLIOptAddCommand(devbroker.Command()),
		service.CLIOptOnConfigParse(func(*service.ParsedConfig) error {
			return applyRuntimeEnv(os.LookupEnv)
		}),
	)
}
