package readinggen

import (
	"fmt"
	"math"
)

// labelSpec is one field name of the stream. Its values always map to the
// same InfluxDB type, whatever variant carries them: a stream that flipped a
// field's type would hit real type conflicts and test the wrong thing.
type labelSpec struct {
	name    string
	display string
	// decl is the datatype_type stage 2 would declare for it ("" = never
	// declared: nested values).
	decl string
	// typed: the value's JSON form depends on the declaration (a numeric
	// string declared integer, a "true" declared boolean, ...), and the label
	// appears only in typed messages.
	typed bool
	// value draws a value; declared says whether datatype_type covers it.
	value func(g *Generator, declared bool) any
	// tag is the variant the value exercises.
	tag string
}

// group is a datatype category: the index code and its labels.
type group struct {
	name    string // variant tag
	indexes []string
	labels  []*labelSpec
	meta    groupMeta
}

type groupMeta struct {
	name, unit, category, description string
	min, max                          any
}

func round(x float64, decimals int) float64 {
	p := math.Pow(10, float64(decimals))
	return math.Round(x*p) / p
}

// floatIn draws a float in [lo, hi) with 0 to 2 decimals; a third of them are
// integral (48.0), which Python still writes with a fraction.
func floatIn(lo, hi float64) func(*Generator, bool) any {
	return func(g *Generator, _ bool) any {
		x := lo + g.rng.Float64()*(hi-lo)
		return round(x, g.rng.IntN(3))
	}
}

func intIn(lo, hi int64) func(*Generator, bool) any {
	return func(g *Generator, _ bool) any { return lo + g.rng.Int64N(hi-lo) }
}

func pick[T any](g *Generator, xs []T) T { return xs[g.rng.IntN(len(xs))] }

var (
	labelTemperature = &labelSpec{name: "temperature", display: "Température", decl: "number", value: floatIn(-10, 35), tag: "value:float"}
	labelHumidity    = &labelSpec{name: "humidity", display: "Humidité", decl: "number", value: floatIn(20, 95), tag: "value:float"}
	labelPressure    = &labelSpec{name: "pressure", display: "Pression", decl: "number", value: floatIn(980, 1040), tag: "value:float"}
	labelOutdoor     = &labelSpec{name: "température extérieure", display: "Température extérieure", decl: "number", value: floatIn(-20, 40), tag: "label:escape"}
	labelCO2         = &labelSpec{name: "CO2 ppm", display: "CO₂", decl: "number", value: floatIn(400, 2000), tag: "label:escape"}
	labelFlow        = &labelSpec{name: "flow,rate", display: "Débit", decl: "number", value: floatIn(0, 12), tag: "label:escape"}
	labelRatio       = &labelSpec{name: "ratio=in/out", display: "Ratio", decl: "number", value: floatIn(0, 2), tag: "label:escape"}
	labelLeak        = &labelSpec{name: "leak_rate", display: "Fuite", decl: "number", tag: "value:float-exp",
		// Below 1e-4 Python switches to exponent notation (1.5e-05).
		value: func(g *Generator, _ bool) any {
			return round(1+g.rng.Float64()*9, 1) * math.Pow(10, -float64(5+g.rng.IntN(4)))
		}}

	labelBattery = &labelSpec{name: "battery", display: "Batterie", decl: "integer", value: intIn(0, 101), tag: "value:int"}
	labelRSSI    = &labelSpec{name: "rssi", display: "RSSI", decl: "integer", value: intIn(-120, -30), tag: "value:int"}
	labelSNR     = &labelSpec{name: "snr", display: "SNR", decl: "number", value: floatIn(-20, 12), tag: "value:float"}
	labelVoltage = &labelSpec{name: "battery_voltage", display: "Tension", decl: "number", value: floatIn(2.8, 3.7), tag: "value:float"}

	labelCounter = &labelSpec{name: "counter", display: "Compteur", decl: "integer", value: intIn(0, 1_000_000), tag: "value:int"}
	labelUptime  = &labelSpec{name: "uptime_s", display: "Uptime", decl: "integer", value: intIn(0, 10_000_000), tag: "value:int"}
	labelEnergy  = &labelSpec{name: "energy_wh", display: "Énergie", decl: "number", tag: "value:float-exp",
		// From 1e16 up Python writes an exponent (1.2345e+17).
		value: func(g *Generator, _ bool) any {
			if g.chance(0.5) {
				return round(1+g.rng.Float64()*9, 4) * 1e17
			}
			return round(g.rng.Float64()*1e6, 1)
		}}
	labelRawCounter = &labelSpec{name: "raw_counter", display: "Compteur brut", decl: "number", tag: "value:bigint",
		// Always beyond int64, so always stored as a float.
		value: func(g *Generator, _ bool) any {
			return bigInt(fmt.Sprintf("%d", uint64(math.MaxInt64)+1+g.rng.Uint64N(math.MaxInt64)))
		}}

	numericTexts = []string{"5", "120", "60", "007", "-3", "0.5", "2.50", "1e3", " 42 ", "15.0", "3600"}
	otherTexts   = []string{
		"on", "off", "auto", "v2.1.0", "2.1.0-rc1", "AB CD", `say "hi"`, `C:\data\log`, "a,b=c",
		"ligne 1\nligne 2", "Paramètres avancés", "😀 ok", "tab\there", "NaNa", "0x1F",
	}
	labelPeriod    = &labelSpec{name: "measurement_period_base", display: "Période de mesure", decl: "number", value: numText, tag: "value:numeric-string"}
	labelInterval  = &labelSpec{name: "transmission_interval", display: "Intervalle d'émission", decl: "number", value: numText, tag: "value:numeric-string"}
	labelThreshold = &labelSpec{name: "threshold_high", display: "Seuil haut", decl: "number", value: numText, tag: "value:numeric-string"}
	labelFirmware  = &labelSpec{name: "firmware", display: "Firmware", decl: "string", value: otherText, tag: "value:string"}
	labelMode      = &labelSpec{name: "mode", display: "Mode", decl: "string", value: otherText, tag: "value:string"}
	labelNote      = &labelSpec{name: "note", display: "Note", decl: "string", value: otherText, tag: "value:string"}

	labelAlarmHigh = &labelSpec{name: "alarm_high", display: "Alarme haute", decl: "boolean", value: boolValue, tag: "value:bool"}
	labelAlarmLow  = &labelSpec{name: "alarm_low", display: "Alarme basse", decl: "boolean", value: boolValue, tag: "value:bool"}
	labelDoor      = &labelSpec{name: "door_open", display: "Porte ouverte", decl: "boolean", value: boolValue, tag: "value:bool"}
	labelTamper    = &labelSpec{name: "tamper", display: "Arrachement", decl: "boolean", value: boolValue, tag: "value:bool"}

	labelRules       = &labelSpec{name: "rules", display: "Règles", value: rulesValue, tag: "value:nested"}
	labelLEDs        = &labelSpec{name: "led_config", display: "LED", value: ledValue, tag: "value:nested"}
	labelSchedule    = &labelSpec{name: "schedule", display: "Planning", value: scheduleValue, tag: "value:nested"}
	labelCalibration = &labelSpec{name: "calibration", display: "Étalonnage", value: calibrationValue, tag: "value:nested"}

	// Typed labels: datatype_type decides, so the JSON form differs from the
	// stored type when declared, and is the natural form when not.
	labelSetpoint = &labelSpec{name: "setpoint", display: "Consigne", decl: "number", typed: true, tag: "typed:number",
		value: func(g *Generator, declared bool) any {
			if declared && g.chance(0.5) {
				return 15 + g.rng.Int64N(10) // an int literal declared number: a float
			}
			return round(15+g.rng.Float64()*10, 1)
		}}
	labelPeriodS = &labelSpec{name: "period_s", display: "Période", decl: "integer", typed: true, tag: "typed:integer",
		value: func(g *Generator, declared bool) any {
			n := 60 * (1 + g.rng.Int64N(30))
			if !declared {
				return n
			}
			switch g.rng.IntN(3) {
			case 0:
				return fmt.Sprintf("%d", n) // an integral numeric string declared integer
			case 1:
				return float64(n) // an integral float declared integer
			}
			return n
		}}
	labelRelay = &labelSpec{name: "relay", display: "Relais", decl: "boolean", typed: true, tag: "typed:boolean",
		value: func(g *Generator, declared bool) any {
			b := g.chance(0.5)
			if declared && g.chance(0.5) {
				if b {
					return "true"
				}
				return "false"
			}
			return b
		}}
	labelSerial = &labelSpec{name: "serial_text", display: "Numéro de série", decl: "string", typed: true, tag: "typed:string",
		value: func(g *Generator, declared bool) any {
			n := g.rng.IntN(1_000_000)
			if declared {
				return fmt.Sprintf("%06d", n) // numeric-looking, but declared string: stays a string
			}
			return fmt.Sprintf("SN-%06d", n)
		}}
)

func numText(g *Generator, _ bool) any   { return pick(g, numericTexts) }
func otherText(g *Generator, _ bool) any { return pick(g, otherTexts) }
func boolValue(g *Generator, _ bool) any { return g.chance(0.3) }

func rulesValue(g *Generator, _ bool) any {
	n := 1 + g.rng.IntN(3)
	rules := make([]any, n)
	for i := range rules {
		rules[i] = object{
			{"channel_mask", int64(1 << g.rng.IntN(4))},
			{"parameters", []any{int64(60 * (1 + g.rng.IntN(10))), int64(g.rng.IntN(50)), int64(g.rng.IntN(2))}},
			{"threshold", round(g.rng.Float64()*40, 1)},
			{"zone", pick(g, []string{"entrée", "serre nord", "cave"})},
		}
	}
	return rules
}

func ledValue(g *Generator, _ bool) any {
	v := int64(g.rng.IntN(16))
	return []any{v, v, v, v}
}

func scheduleValue(g *Generator, _ bool) any {
	return []any{object{
		{"day", pick(g, []string{"lundi", "mardi", "mercredi", "jeudi", "vendredi"})},
		{"on", "08:00"},
		{"off", "18:30"},
		{"enabled", g.chance(0.7)},
		{"options", object{{"dim", 0.5}, {"label", nil}}},
	}}
}

// calibrationValue sometimes carries a non-finite number inside a nested
// value, which must be stored as null in the JSON text.
func calibrationValue(g *Generator, _ bool) any {
	vals := []any{1.0, round(g.rng.Float64(), 3), round(g.rng.Float64()*2, 2)}
	if g.chance(0.3) {
		vals[1+g.rng.IntN(2)] = math.NaN()
	}
	return vals
}

var groups = []*group{
	{name: "index:T", indexes: []string{"T"}, labels: []*labelSpec{labelTemperature, labelHumidity, labelPressure, labelOutdoor, labelCO2, labelFlow, labelRatio, labelLeak},
		meta: groupMeta{name: "Température", unit: "°C", category: "measure", description: "Mesure d'ambiance", min: -40.0, max: 85.0}},
	{name: "index:M", indexes: []string{"M", "I", ""}, labels: []*labelSpec{labelBattery, labelRSSI, labelSNR, labelVoltage},
		meta: groupMeta{name: "Maintenance", unit: "%", category: "maintenance", description: "État du capteur", min: int64(0), max: int64(100)}},
	{name: "index:U", indexes: []string{"U"}, labels: []*labelSpec{labelCounter, labelUptime, labelEnergy, labelRawCounter},
		meta: groupMeta{name: "Compteurs", unit: "Wh", category: "counter"}},
	{name: "index:P", indexes: []string{"P"}, labels: []*labelSpec{labelPeriod, labelInterval, labelThreshold, labelFirmware, labelMode, labelNote},
		meta: groupMeta{name: "Paramètres Texte", unit: "%", category: "parameter", description: "Paramètres de l'appareil"}},
	{name: "index:OK_ALARM", indexes: []string{"OK_ALARM"}, labels: []*labelSpec{labelAlarmHigh, labelAlarmLow, labelDoor, labelTamper},
		meta: groupMeta{name: "Alarmes", category: "alarm"}},
	{name: "index:P_ARRAY", indexes: []string{"P_ARRAY"}, labels: []*labelSpec{labelRules, labelLEDs, labelSchedule, labelCalibration},
		meta: groupMeta{name: "Configuration", category: "configuration"}},
	{name: "typed", indexes: []string{"P", "T"}, labels: []*labelSpec{labelSetpoint, labelPeriodS, labelRelay, labelSerial},
		meta: groupMeta{name: "Consignes", unit: "°C", category: "parameter"}},
}

// groupWeights: how often each group is drawn, in the order of groups.
var groupWeights = []int{28, 16, 10, 16, 12, 9, 9}

// positionalLabels are the floats sent with no labels at all; their field
// names are value_0..value_3, always floats.
var positionalLabels = []*labelSpec{labelTemperature, labelHumidity, labelPressure, labelVoltage}
