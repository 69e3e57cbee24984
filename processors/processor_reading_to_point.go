package processors

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/preservarium/iot-ingestor/internal/lineprotocol"
	"github.com/preservarium/iot-ingestor/internal/meta"
)

const (
	rtpFieldMeasurement       = "measurement"
	rtpFieldTags              = "tags"
	rtpFieldNumbers           = "numbers"
	rtpFieldNestedValues      = "nested_values"
	rtpFieldPrecision         = "precision"
	rtpFieldTimeSource        = "time_source"
	rtpFieldReservedKeys      = "reserved_keys"
	rtpFieldReservedKeyPrefix = "reserved_key_prefix"
	rtpFieldMaxFields         = "max_fields"
	rtpFieldMaxLineBytes      = "max_line_bytes"
	rtpFieldStaticTags        = "static_tags"
	rtpFieldFieldRename       = "field_rename"
	rtpFieldFieldInclude      = "field_include"
	rtpFieldFieldExclude      = "field_exclude"
	rtpFieldFieldTags         = "field_tags"

	// rtpDefaultMeasurement is mapped natively (no interpolation per message):
	// the measurement is the device_id.
	rtpDefaultMeasurement = `${! json("device_id") }`

	rtpMetricMapped     = "iot_messages_mapped"
	rtpMetricFiltered   = "iot_messages_filtered"
	rtpMetricRejected   = "iot_messages_rejected"
	rtpMetricNonFinite  = "iot_values_nonfinite_skipped"
	rtpMetricTagMissing = "iot_tag_missing"

	// rtpNonFiniteLogEvery bounds the info-level summary of skipped
	// non-finite values: a device reporting NaN every second must not flood
	// the log. Each occurrence is logged at debug level.
	rtpNonFiniteLogEvery = 30 * time.Second
)

var rtpPrecisions = map[string]int64{"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}

func readingToPointSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Stable().
		Categories("Parsing").
		Summary("Maps a stage-2 reading (the JSON value of an `iot_validated_data` record) to one InfluxDB line-protocol point.").
		Description(`
The message content is replaced by one line of line protocol, without a trailing newline, whose
timestamp is in nanoseconds (the InfluxDB output's default precision), truncated to `+"`precision`"+`.

### Default mapping

This is the shape the earlier ingestor wrote and deployed dashboards query: measurement = `+"`device_id`"+`;
one field per entry of `+"`values`"+`, named `+"`labels[i]`"+` (older messages: `+"`label[i]`"+`; `+"`labels`"+` wins when both exist;
a null or empty label, or no labels, gives `+"`value_{i}`"+`, counted from 0); no tags; time = the message
`+"`timestamp`"+`. Fields keep the order of `+"`values`"+`.

- `+"`metadata.persist`"+` false (a bool for the whole message, or a list with one flag per value) means the
  value is not stored; a missing flag means store.
- Without `+"`metadata.datatype_type[i]`"+`: an integer literal is an integer field (one beyond int64 a float), a
  number with a fraction or exponent a float, a boolean a boolean; a string that is a finite decimal or
  exponent number once spaces are trimmed is stored as a float (as the earlier ingestor did), any other
  string as a string; null is skipped; nested arrays and objects are stored as one compact JSON-text
  string field (non-finite numbers inside become null).
- With `+"`datatype_type[i]`"+` it decides: `+"`number`"+` float, `+"`integer`"+` integer (from an integral number or numeric string),
  `+"`boolean`"+` boolean (from a boolean or the strings true/false, any case), `+"`string`"+` the value's text. A value
  that cannot take its declared type is a validation error. `+"`persist`"+`/`+"`datatype_type`"+` lists shorter than
  `+"`values`"+` mean the defaults for the missing entries; longer ones are ignored beyond `+"`values`"+`.
- Timestamps are Python `+"`isoformat()`"+` output, with or without offset (none means UTC) and fraction; a
  missing, null or empty `+"`timestamp`"+` means the Kafka record time (`+"`kafka_timestamp_ms`"+` metadata).

Python writes non-finite floats as the bare tokens `+"`NaN`, `Infinity`, `-Infinity`"+`: they are accepted, the
values holding them are skipped, counted in `+"`"+rtpMetricNonFinite+"`"+` and logged (debug per message, an info
summary at most every 30s) with the request id. A message with nothing left to store (every value
unpersisted, null, non-finite or dropped) is removed from the batch, which acknowledges it, and counted in
`+"`"+rtpMetricFiltered+"`"+`.

### Mapping by configuration

Everyday changes need no Bloblang. A value goes through its `+"`metadata.persist`"+` flag, then `+"`field_include`"+` and
`+"`field_exclude`"+` (globs on the label as it arrives, `+"`value_{i}`"+` when it has none); a label listed in `+"`field_tags`"+`
becomes a tag; the others are fields named by `+"`field_rename`"+`, then `+"`reserved_keys`"+`. `+"`static_tags`"+` adds fixed tags.
Settings that contradict each other (a tag key set twice, two labels renamed to one name, a field renamed to a tag
key, a `+"`field_tags`"+` label the patterns drop) fail at start.

### Errors

A message that cannot be mapped keeps its content and is marked with an error (route it with `+"`catch`"+` or a
`+"`switch`"+` output on `+"`errored()`"+`). The text is one line starting with its kind:

- `+"`decode: `"+` not JSON even after accepting the Python tokens, not valid UTF-8, or not a JSON object;
- `+"`validation: `"+` the message breaks the contract: `+"`device_id`"+` missing, empty or not a string; `+"`values`"+` missing or
  not an array; `+"`labels`"+` of another length than `+"`values`"+`; a field name used twice; a timestamp that cannot
  be parsed; a value that cannot take its declared type; a name line protocol cannot carry (a newline or
  other control character, a backslash before `+"`,`, `=`, space or `\\`"+`, or at the end); a field key InfluxDB
  reserves (`+"`time`"+`, a leading `+"`_`"+`) unless `+"`reserved_keys: rename`"+`; a string over 64 KiB; more entries in
  `+"`values`"+` (or `+"`labels`"+`) than `+"`max_fields`"+`; a line longer than `+"`max_line_bytes`"+`. Both limits name their setting
  in the reason. `+"`max_fields`"+` is checked before the reading is decoded: a megabyte of `+"`{\"values\":[0,0,...]}`"+` costs
  a few KB to reject instead of the 355 MB its half a million values took to decode. In a reading that large
  (as many commas as `+"`max_fields`"+`), what the mapping never reads is left out before decoding: keys the
  contract does not define, and in `+"`metadata`"+` what is neither `+"`persist`"+`, `+"`datatype_type`"+` nor on a `+"`tags`"+` path, and of those two lists the entries beyond `+"`max_fields`"+`.
  Such a reading is stored as any other, and its bulk costs no memory: a megabyte of parser extras in
  `+"`metadata`"+` took 236 MB to decode. The error record still carries the whole original.

Counted in `+"`"+rtpMetricMapped+"`, `"+rtpMetricFiltered+"` and `"+rtpMetricRejected+"`"+` (label `+"`kind`"+`).

### Metadata

Every message, mapped or not, gets:

- `+"`"+meta.Original+"`"+`: the original message as valid JSON text, for the error record's `+"`original_message`"+`: the input
  unchanged when it is a valid JSON object; re-encoded with non-finite numbers as null when it held the
  Python tokens; `+"`{\"raw\":\"<input as text>\"}`"+` when it is not a JSON object (invalid UTF-8 becomes U+FFFD).
- `+"`"+meta.RequestID+"`"+`: the input's `+"`request_id`"+` when a non-empty string, else the `+"`kafka_key`"+` metadata as text, else empty.

### Line protocol

Measurement, tag keys, tag values and field keys are escaped exactly (commas, spaces, `+"`=`"+`); string values
are double-quoted with `+"`\"`"+` and `+"`\\`"+` escaped. Line protocol cannot carry a line break in a string value:
a newline is written as the two characters `+"`\\n`"+` (and a carriage return as `+"`\\r`"+`), which InfluxDB stores as
a backslash and a letter.

### Performance

The JSON is decoded with a zero-allocation parser that keeps number literals; the lines of a batch share
one buffer and its metadata text one string, so a message costs about two allocations of its own.
Prefer the default measurement: a custom interpolated one evaluates Bloblang on a copy of every message.`).
		Field(service.NewInterpolatedStringField(rtpFieldMeasurement).
			Description("The measurement of every point. The default is the message's `device_id`, read natively; any other value is an interpolated string evaluated against the original message (as valid JSON) and its metadata. A `${! ... }` section that resolves nothing in a message (a missing key, a null) makes that message a validation error naming the path, instead of a point in a measurement called `null`; give a fallback with `.or(\"...\")` where one is wanted.").
			Default(rtpDefaultMeasurement).
			Examples(rtpDefaultMeasurement, `${! json("metadata.datatype_name") }`, "readings")).
		Field(service.NewStringMapField(rtpFieldTags).
			Description("Tags to add: tag key -> dotted path of the value in the message (array entries by number, e.g. `labels.0`). A missing, null, empty or non-finite value omits the tag from that point, which is counted per tag in `"+rtpMetricTagMissing+"` (label `tag`) and logged once per tag as a warning; numbers and booleans are written as their text, arrays and objects as JSON text. Keys are sorted, as InfluxDB prefers. A tag key may not be `time`, start with `_`, or equal a field name of the message.").
			Default(map[string]any{}).
			Example(map[string]any{"index": "index", "datatype": "metadata.datatype_name", "unit": "metadata.datatype_unit"})).
		Field(service.NewStringMapField(rtpFieldStaticTags).
			Description("Tags with a fixed value on every point: tag key -> value (Telegraf's `[global_tags]`). A key may not also be set by `tags` or `field_tags`; keys and values follow the rules of `tags`.").
			Default(map[string]any{}).
			Example(map[string]any{"site": "paris", "line": "3"})).
		Field(service.NewStringMapField(rtpFieldFieldRename).
			Description("Field names to change: the label as it arrives (or `value_{i}` for a value without one) -> the name stored. Applied after `field_include`/`field_exclude` (which see the label as it arrives) and before `reserved_keys`. Two labels may not be renamed to the same name, nor to a tag key.").
			Default(map[string]any{}).
			Example(map[string]any{"temp": "temperature", "value_0": "battery_v"})).
		Field(service.NewStringListField(rtpFieldFieldInclude).
			Description("When not empty, only values whose label as it arrives (`value_{i}` when there is none) matches one of these glob patterns are stored; the others are skipped like an unpersisted value. Patterns are Go's `path.Match`: `*` any run of characters except `/`, `?` one character, `[a-z]` a class, `\\` escapes; checked at start.").
			Default([]any{}).
			Example([]any{"temperature", "hum*", "value_[0-3]"})).
		Field(service.NewStringListField(rtpFieldFieldExclude).
			Description("Values whose label as it arrives matches one of these glob patterns (as `field_include`) are skipped like an unpersisted value, even when `field_include` matches them.").
			Default([]any{}).
			Example([]any{"debug_*", "rssi"})).
		Field(service.NewStringListField(rtpFieldFieldTags).
			Description("Labels whose value is stored as a tag (its text, as for `tags`) instead of a field; the tag key is the label after `field_rename`. The value follows the field rules first (`persist`, `field_include`, `field_exclude`); a null, empty or non-finite one leaves the tag out. A reading left with no field is filtered, as when every value is unpersisted.").
			Default([]any{}).
			Example([]any{"firmware", "site_code"})).
		Field(service.NewStringAnnotatedEnumField(rtpFieldNumbers, map[string]string{
			"preserve": "An integer literal is an integer field (`21i`), a literal with a fraction or exponent a float (`21.5`), as the upstream types say.",
			"float":    "Every number is a float field, integers and declared integers included: use it when one field arrives both as `21` and `21.5` and must keep one type.",
		}).
			Description("How JSON numbers become field types.").
			Default("preserve").
			Example("float")).
		Field(service.NewStringAnnotatedEnumField(rtpFieldNestedValues, map[string]string{
			"json": "A value that is an array or object (configuration parameters) is stored losslessly as one compact JSON-text string field.",
			"drop": "Such values are not stored (unless `datatype_type` declares them `string`).",
		}).
			Description("What to do with nested values.").
			Default("json").
			Example("drop")).
		Field(service.NewStringEnumField(rtpFieldPrecision, "s", "ms", "us", "ns").
			Description("The time precision of stored points: the timestamp is truncated (floored) to it and still written in nanoseconds. `us` keeps every microsecond the upstream stages send; `s` (the earlier ingestor's) merges readings of one device within the same second. The shipped pipeline sets it from `INFLUXDB_TIMESTAMP_PRECISION`.").
			Default("us").
			Example(`${INFLUXDB_TIMESTAMP_PRECISION:us}`)).
		Field(service.NewStringAnnotatedEnumField(rtpFieldTimeSource, map[string]string{
			"message": "The message's `timestamp`; when it is missing, null or empty, the Kafka record time (`kafka_timestamp_ms`).",
			"kafka":   "Always the Kafka record time (`kafka_timestamp_ms`).",
		}).
			Description("Where the point's time comes from. Without a usable time the message is a validation error. The time must come from the record, never the clock, so a redelivered message overwrites the same point.").
			Default("message").
			Example("kafka")).
		Field(service.NewStringAnnotatedEnumField(rtpFieldReservedKeys, map[string]string{
			"reject": "A field key InfluxDB rejects (`time`, a leading `_`) is a validation error.",
			"rename": "Such a key is stored with `reserved_key_prefix` before it (`time` -> `x_time`).",
		}).
			Description("What to do with field keys InfluxDB reserves.").
			Default("reject").
			Example("rename")).
		Field(service.NewStringField(rtpFieldReservedKeyPrefix).
			Description("The prefix added to reserved field keys when `reserved_keys` is `rename`. It must not start with `_` nor contain characters line protocol cannot carry in a name.").
			Default("x_").
			Example("field_").
			Advanced()).
		Field(service.NewIntField(rtpFieldMaxFields).
			Description("The most entries `values` (and `labels` or `label`) may have, and so the most fields a point may have: each entry is at most one field. A reading over it is a validation error naming this setting; it is checked before the reading is decoded, so a huge array costs no more than its text. Stage 2 publishes 1 to about 20 values per reading.").
			Default(rtpDefaultMaxFields).
			Example(200).
			Advanced()).
		Field(service.NewIntField(rtpFieldMaxLineBytes).
			Description("The most bytes of one point's line protocol. A reading whose line would be longer is a validation error naming this setting, found as the line is written. A realistic line is under 1 KB (a few KB with a nested configuration stored as JSON text); the default, 1 MiB, is also the largest record Kafka accepts by default. The InfluxDB output's request size is bounded separately.").
			Default(rtpDefaultMaxLineBytes).
			Example(65536).
			Advanced()).
		LintRule(`root = [
  if this.reserved_keys.or("reject") == "rename" && this.reserved_key_prefix.or("x_").re_match("^(_|$)") { "reserved_key_prefix must be non-empty and must not start with _ when reserved_keys is rename" },
  if this.tags.or({}).keys().any(k -> k == "time" || k.has_prefix("_") || k == "") { "tag keys may not be empty, time or start with _: InfluxDB rejects them" },
  if this.tags.or({}).values().any(p -> p.trim() == "") { "every tag needs a non-empty path" },
  if this.static_tags.or({}).keys().any(k -> this.tags.or({}).keys().contains(k)) { "a tag key is in both static_tags and tags: keep one of them" },
  if this.static_tags.or({}).keys().any(k -> k == "time" || k.has_prefix("_") || k == "") { "static_tags keys may not be empty, time or start with _: InfluxDB rejects them" },
  if this.max_fields.or(1) < 1 { "max_fields must be at least 1" },
  if this.max_line_bytes.or(64) < 64 { "max_line_bytes must be at least 64" },
].filter(e -> e != null)`).
		Example("Default mapping", "What the earlier ingestor stored, at microsecond precision.", `
pipeline:
  processors:
    - reading_to_point: {}
`).
		Example("Telegraf style", "A fixed site tag, the device as a tag of a measurement per datatype, renamed and filtered fields, and the firmware version as a tag.", `
pipeline:
  processors:
    - reading_to_point:
        measurement: '${! json("metadata.datatype_name") }'
        tags:
          device: device_id
        static_tags:
          site: paris
        field_exclude: ["debug_*"]
        field_rename:
          temp: temperature
        field_tags: [firmware]
`).
		Example("Tags and types", "Categorise points by datatype, keep every number a float, and rename reserved keys.", `
pipeline:
  processors:
    - reading_to_point:
        tags:
          index: index
          datatype: metadata.datatype_name
          unit: metadata.datatype_unit
        numbers: float
        precision: ${INFLUXDB_TIMESTAMP_PRECISION:us}
        reserved_keys: rename
`)
}

func init() {
	service.MustRegisterBatchProcessor("reading_to_point", readingToPointSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchProcessor, error) {
			return newReadingToPoint(conf, mgr)
		})
}

// readingToPoint is the reading_to_point processor.
type readingToPoint struct {
	mapper      pointMapper
	measurement *service.InterpolatedString // nil for the native device_id
	states      sync.Pool

	log          *service.Logger
	mMapped      *service.MetricCounter
	mFiltered    *service.MetricCounter
	mRejected    *service.MetricCounter
	mNonFinite   *service.MetricCounter
	nonFiniteLog nonFiniteSummary
	mTagMissing  *service.MetricCounter
	// tagWarned is set per configured tag once its missing value was logged.
	tagWarned []atomic.Bool
}

func newReadingToPoint(conf *service.ParsedConfig, mgr *service.Resources) (*readingToPoint, error) {
	m, measurement, err := pointMapperFromConfig(conf)
	if err != nil {
		return nil, err
	}
	p := &readingToPoint{
		mapper:      m,
		measurement: measurement,
		log:         mgr.Logger(),
		mMapped:     mgr.Metrics().NewCounter(rtpMetricMapped),
		mFiltered:   mgr.Metrics().NewCounter(rtpMetricFiltered),
		mRejected:   mgr.Metrics().NewCounter(rtpMetricRejected, "kind"),
		mNonFinite:  mgr.Metrics().NewCounter(rtpMetricNonFinite),
		mTagMissing: mgr.Metrics().NewCounter(rtpMetricTagMissing, "tag"),
		tagWarned:   make([]atomic.Bool, len(m.tags)),
	}
	p.states.New = func() any { return new(batchState) }
	return p, nil
}

// pointMapperFromConfig validates everything it can, so a bad configuration
// fails at start-up with a message naming the field.
func pointMapperFromConfig(conf *service.ParsedConfig) (pointMapper, *service.InterpolatedString, error) {
	var m pointMapper
	rawMeasurement, err := conf.FieldString(rtpFieldMeasurement)
	if err != nil {
		return m, nil, err
	}
	var measurement *service.InterpolatedString
	if strings.TrimSpace(rawMeasurement) != rtpDefaultMeasurement {
		if strings.TrimSpace(rawMeasurement) == "" {
			return m, nil, fmt.Errorf("field %s: must not be empty", rtpFieldMeasurement)
		}
		if measurement, err = conf.FieldInterpolatedString(rtpFieldMeasurement); err != nil {
			return m, nil, err
		}
		checked, err := nullCheckedMeasurement(rawMeasurement)
		if err == nil {
			measurement, err = service.NewInterpolatedString(checked)
		}
		if err != nil {
			return m, nil, fmt.Errorf("field %s: cannot add the check for a section that resolves nothing (write each ${! ... } on one line, without comments): %v", rtpFieldMeasurement, err)
		}
	}

	tags, err := conf.FieldStringMap(rtpFieldTags)
	if err != nil {
		return m, nil, err
	}
	for key, path := range tags {
		if lineprotocol.IsReservedKey(key) {
			return m, nil, fmt.Errorf("field %s: tag key %q is reserved by InfluxDB (time, or a leading _)", rtpFieldTags, key)
		}
		if why := lineprotocol.CheckName(key); why != "" {
			return m, nil, fmt.Errorf("field %s: tag key %q %s", rtpFieldTags, key, why)
		}
		path = strings.TrimSpace(path)
		if path == "" {
			return m, nil, fmt.Errorf("field %s: tag %q has an empty path", rtpFieldTags, key)
		}
		segments := strings.Split(path, ".")
		for _, s := range segments {
			if s == "" {
				return m, nil, fmt.Errorf("field %s: tag %q has the path %q with an empty segment", rtpFieldTags, key, path)
			}
		}
		m.tags = append(m.tags, tagSpec{key: key, kind: tagFromPath, path: segments, desc: path})
	}
	if err := mappingRulesFromConfig(conf, &m); err != nil {
		return m, nil, err
	}

	numbers, err := conf.FieldString(rtpFieldNumbers)
	if err != nil {
		return m, nil, err
	}
	switch numbers {
	case "preserve":
	case "float":
		m.floatNumbers = true
	default:
		return m, nil, fmt.Errorf("field %s: %q is not preserve or float", rtpFieldNumbers, numbers)
	}

	nested, err := conf.FieldString(rtpFieldNestedValues)
	if err != nil {
		return m, nil, err
	}
	switch nested {
	case "json":
	case "drop":
		m.dropNested = true
	default:
		return m, nil, fmt.Errorf("field %s: %q is not json or drop", rtpFieldNestedValues, nested)
	}

	precision, err := conf.FieldString(rtpFieldPrecision)
	if err != nil {
		return m, nil, err
	}
	unit, ok := rtpPrecisions[strings.TrimSpace(precision)]
	if !ok {
		return m, nil, fmt.Errorf("field %s: %q is not s, ms, us or ns", rtpFieldPrecision, precision)
	}
	m.precisionNs = unit

	source, err := conf.FieldString(rtpFieldTimeSource)
	if err != nil {
		return m, nil, err
	}
	switch source {
	case "message":
	case "kafka":
		m.kafkaTime = true
	default:
		return m, nil, fmt.Errorf("field %s: %q is not message or kafka", rtpFieldTimeSource, source)
	}

	reserved, err := conf.FieldString(rtpFieldReservedKeys)
	if err != nil {
		return m, nil, err
	}
	if m.reservedPrefix, err = conf.FieldString(rtpFieldReservedKeyPrefix); err != nil {
		return m, nil, err
	}
	switch reserved {
	case "reject":
	case "rename":
		m.renameReserved = true
		if lineprotocol.IsReservedKey(m.reservedPrefix) || m.reservedPrefix == "" {
			return m, nil, fmt.Errorf("field %s: %q must be non-empty and must not start with _", rtpFieldReservedKeyPrefix, m.reservedPrefix)
		}
		if why := lineprotocol.CheckName(m.reservedPrefix + "a"); why != "" {
			return m, nil, fmt.Errorf("field %s: %q %s", rtpFieldReservedKeyPrefix, m.reservedPrefix, why)
		}
	default:
		return m, nil, fmt.Errorf("field %s: %q is not reject or rename", rtpFieldReservedKeys, reserved)
	}

	if m.maxFields, err = conf.FieldInt(rtpFieldMaxFields); err != nil {
		return m, nil, err
	}
	if m.maxFields < 1 {
		return m, nil, fmt.Errorf("field %s: %d must be at least 1", rtpFieldMaxFields, m.maxFields)
	}
	if m.maxLineBytes, err = conf.FieldInt(rtpFieldMaxLineBytes); err != nil {
		return m, nil, err
	}
	if m.maxLineBytes < rtpMinLineBytes {
		return m, nil, fmt.Errorf("field %s: %d must be at least %d", rtpFieldMaxLineBytes, m.maxLineBytes, rtpMinLineBytes)
	}
	return m, measurement, nil
}

// rtpSpan locates one message's results in the batch's shared buffers.
type rtpSpan struct {
	lineStart, lineEnd int
	origStart, origEnd int
	origView           string
	idStart, idEnd     int
	nonFinite          int
	filtered           bool
	err                *mappingError
}

// batchState is what ProcessBatch reuses from one batch to the next: the
// mapping state, and the buffers a batch's results are built in before they are
// copied out at their exact size. A line is about a fifth of its JSON, so no
// estimate made up front fits well; and a large buffer that is allocated is
// also zeroed, and counts towards the next garbage collection while its batch
// is in flight.
type batchState struct {
	mapState
	lines   []byte    // the lines of the batch's points
	metaBuf []byte    // the request ids, and the originals that had to be re-encoded
	spans   []rtpSpan // where each message's results are in lines and meta
	// tagMissing counts, per configured tag, the points of the batch stored
	// without it.
	tagMissing []int64
}

// ProcessBatch maps every message of the batch. Lines go into one buffer and
// the metadata text into one string, so a batch costs a few allocations
// whatever its size, besides the engine's per-message metadata entries.
func (p *readingToPoint) ProcessBatch(ctx context.Context, batch service.MessageBatch) ([]service.MessageBatch, error) {
	bs := p.states.Get().(*batchState)
	defer p.states.Put(bs)
	st := &bs.mapState
	lines, metaBuf := bs.lines[:0], bs.metaBuf[:0]
	spans := slices.Grow(bs.spans[:0], len(batch))[:len(batch)]
	defer func() {
		// Kept for the next batch, without what they point to.
		bs.lines, bs.metaBuf = lines, metaBuf
		clear(spans)
		bs.spans = spans
	}()

	for i, msg := range batch {
		sp := &spans[i]
		in, err := msg.AsBytes()
		if err != nil {
			in = nil
		}
		rec := recordMetaOf(msg)
		var measure func([]byte) (string, error)
		if p.measurement != nil {
			measure = func(original []byte) (string, error) {
				tmp := msg.Copy()
				tmp.SetBytes(bytes.Clone(original))
				return p.measurement.TryString(tmp)
			}
		}
		sp.lineStart = len(lines)
		var res mapOutcome
		lines, res = p.mapper.mapReading(st, in, rec, lines, measure)
		sp.lineEnd = len(lines)
		if sameBytes(res.original, in) {
			// The input is valid JSON as it is: the metadata views it instead
			// of copying it. Message bytes are immutable in the engine, and
			// this message's content is replaced below, so nothing writes to
			// them while the view lives.
			sp.origView = b2s(in)
		} else {
			sp.origStart = len(metaBuf)
			metaBuf = append(metaBuf, res.original...)
			sp.origEnd = len(metaBuf)
		}
		sp.idStart = len(metaBuf)
		metaBuf = append(metaBuf, res.requestID...)
		sp.idEnd = len(metaBuf)
		sp.filtered, sp.nonFinite, sp.err = res.filtered, res.nonFinite, res.err
		if len(st.missing) > 0 && res.err == nil && !res.filtered {
			p.countMissingTags(bs, st.missing, res.requestID)
		}
	}

	metaText := string(metaBuf)
	lineText := bytes.Clone(lines)
	out := make(service.MessageBatch, 0, len(batch))
	var mapped, filtered, decodeErrs, validationErrs, nonFinite int64
	for i, msg := range batch {
		sp := &spans[i]
		if sp.origView != "" {
			msg.MetaSetMut(meta.Original, sp.origView)
		} else {
			msg.MetaSetMut(meta.Original, metaText[sp.origStart:sp.origEnd])
		}
		requestID := metaText[sp.idStart:sp.idEnd]
		msg.MetaSetMut(meta.RequestID, requestID)
		if sp.nonFinite > 0 {
			nonFinite += int64(sp.nonFinite)
			p.logNonFinite(requestID, sp.nonFinite)
		}
		switch {
		case sp.err != nil:
			if sp.err.kind == kindDecode {
				decodeErrs++
			} else {
				validationErrs++
			}
			p.log.Debugf("reading_to_point: request_id=%s: %v", requestID, sp.err)
			msg.SetError(sp.err)
			out = append(out, msg)
		case sp.filtered:
			filtered++
		default:
			mapped++
			msg.SetBytes(lineText[sp.lineStart:sp.lineEnd:sp.lineEnd])
			out = append(out, msg)
		}
	}
	if mapped > 0 {
		p.mMapped.Incr(mapped)
	}
	if filtered > 0 {
		p.mFiltered.Incr(filtered)
	}
	if decodeErrs > 0 {
		p.mRejected.Incr(decodeErrs, string(kindDecode))
	}
	if validationErrs > 0 {
		p.mRejected.Incr(validationErrs, string(kindValidation))
	}
	if nonFinite > 0 {
		p.mNonFinite.Incr(nonFinite)
	}
	for i, n := range bs.tagMissing {
		if n > 0 {
			p.mTagMissing.Incr(n, p.mapper.tags[i].key)
			bs.tagMissing[i] = 0
		}
	}
	if len(out) == 0 {
		// Every message was filtered: returning no batch acknowledges them.
		return nil, nil
	}
	return []service.MessageBatch{out}, nil
}

// countMissingTags counts the tags a stored point was left without, and logs
// the first time each one is: a path that resolves nothing is most often a
// mistake in the configuration or a change upstream, which the count alone
// would hide.
func (p *readingToPoint) countMissingTags(bs *batchState, missing []int, requestID string) {
	if len(bs.tagMissing) < len(p.mapper.tags) {
		bs.tagMissing = make([]int64, len(p.mapper.tags))
	}
	for _, i := range missing {
		bs.tagMissing[i]++
		if p.tagWarned[i].CompareAndSwap(false, true) {
			tag := &p.mapper.tags[i]
			p.log.With("request_id", requestID).Warnf("reading_to_point: the path %s of tag %q resolved nothing (missing, null, empty or non-finite), so the point was stored without that tag; later ones are counted in %s{tag=%q} without a log line", tag.desc, tag.key, rtpMetricTagMissing, tag.key)
		}
	}
}

// Close releases nothing: the processor holds no connections.
func (p *readingToPoint) Close(ctx context.Context) error { return nil }

// sameBytes reports whether a and b are the same memory.
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// recordMetaOf reads what the mapper needs of the reading's Kafka record: its time, which
// places a reading without a timestamp, and its key, the request id of last resort.
func recordMetaOf(msg *service.Message) recordMeta {
	var rec recordMeta
	rec.timestampMs, rec.hasTimestampMs = meta.RecordTimeMs(msg)
	rec.key, rec.hasKey = meta.RecordKey(msg)
	return rec
}

// nonFiniteSummary rate-limits the info-level report of skipped non-finite
// values; every occurrence is still logged at debug level.
type nonFiniteSummary struct {
	mu            sync.Mutex
	last          time.Time
	values, msgs  int64
	lastRequestID string
}

func (p *readingToPoint) logNonFinite(requestID string, n int) {
	// Debugf rather than With: a child logger per message costs allocations
	// even when debug is off.
	p.log.Debugf("reading_to_point: request_id=%s: skipped %d non-finite value(s) (NaN/Infinity)", requestID, n)
	s := &p.nonFiniteLog
	s.mu.Lock()
	s.values += int64(n)
	s.msgs++
	s.lastRequestID = requestID
	now := time.Now()
	if now.Sub(s.last) < rtpNonFiniteLogEvery {
		s.mu.Unlock()
		return
	}
	values, msgs, id := s.values, s.msgs, s.lastRequestID
	s.values, s.msgs, s.last = 0, 0, now
	s.mu.Unlock()
	p.log.With("request_id", id).Infof("reading_to_point: skipped %d non-finite value(s) (NaN/Infinity) in %d message(s) since the last report; the other values were stored", values, msgs)
}
