package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// helpName and helpDescription say what this program is at the top of `ingestor --help`. The
// engine's CLI gives its own line ("A stream processor for mundane tasks") and examples, and no
// option changes them; the help template can, so setHelpTemplate puts these in their place.
const (
	helpName = "ingestor - stage 3 of the IoT pipeline: readings from Kafka into InfluxDB, failures to the error topic"

	helpDescription = `Reads the stage-2 readings (JSON) from the Kafka topic iot_validated_data, stores each
   one in InfluxDB 2.x as a point, in batches and with retries, and puts every message it cannot
   store on the Kafka topic iot_errors with its reason. A Kafka offset is committed only once its
   message is stored, deliberately filtered or on the error topic; outages are waited out.

   It is a build of the Benthos stream processor (v4.60.0) with this project's components:
   kafka_franz (input and output), reading_to_point, iot_error_record, influxdb_v2 and the
   prometheus metrics. While it runs, its HTTP server (HTTP_ADDRESS, default 0.0.0.0:4195)
   answers /ping, /ready and /metrics. MIT licence.

     ingestor run config/ingestor.yaml     run the shipped pipeline (settings from the environment)
     ingestor lint config/ingestor.yaml    check a changed config before deploying it
     ingestor test ./config/...            run the configs' mapping test cases
     ingestor list                         list every component
     ingestor docs influxdb_v2             a component's documentation, every field described
     ingestor kafka-broker                 an embedded Kafka broker for local runs`
)

// setHelpTemplate replaces, in the CLI library's application help template, the name line and
// the description with this program's. The rest of the template (usage, commands, options) is
// left as the library renders it.
func setHelpTemplate() {
	t := cli.AppHelpTemplate
	t = strings.Replace(t, `{{template "helpNameTemplate" .}}`, helpName, 1)
	t = strings.Replace(t, `{{template "descriptionTemplate" .}}`, helpDescription, 1)
	cli.AppHelpTemplate = t
}
