package lineprotocol

import "testing"

// benchPoint appends one realistic point: a device measurement that needs escaping, two tags,
// a float, an integer, a boolean and a text parameter with quotes, and the timestamp. It is
// what the point mapper writes per reading, without the JSON parsing.
func benchPoint(dst []byte) []byte {
	dst = AppendMeasurement(dst, "gw,north-3")
	dst = append(dst, ',')
	dst = AppendKey(dst, "index")
	dst = append(dst, '=')
	dst = AppendKey(dst, "OK_ALARM")
	dst = append(dst, ',')
	dst = AppendKey(dst, "unit")
	dst = append(dst, '=')
	dst = AppendKey(dst, "°C")
	dst = append(dst, ' ')
	dst = AppendKey(dst, "temperature")
	dst = append(dst, '=')
	dst = AppendFloat(dst, 21.53)
	dst = append(dst, ',')
	dst = AppendKey(dst, "alarm code")
	dst = append(dst, '=')
	dst = AppendInt(dst, 17)
	dst = append(dst, ',')
	dst = AppendKey(dst, "ok_alarm")
	dst = append(dst, '=')
	dst = AppendBool(dst, true)
	dst = append(dst, ',')
	dst = AppendKey(dst, "rules")
	dst = append(dst, '=')
	dst = AppendString(dst, `[{"channel_mask": 1, "parameters": [300, 20, 1]}]`)
	return AppendTimestamp(dst, 1749400037476623000)
}

// BenchmarkAppendPoint measures encoding one whole point into a reused buffer: it must not
// allocate.
func BenchmarkAppendPoint(b *testing.B) {
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPoint(nil))))
	for i := 0; i < b.N; i++ {
		buf = benchPoint(buf[:0])
	}
}

func BenchmarkAppendFloat(b *testing.B) {
	buf := make([]byte, 0, 64)
	vals := []float64{21.5, 1013.25, 3.61, -0.125, 48, 1.5e300, 1e-7}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendFloat(buf[:0], vals[i%len(vals)])
	}
}

func BenchmarkAppendString(b *testing.B) {
	buf := make([]byte, 0, 256)
	s := `Param\u00e8tres "texte" avec \ barre et retour` + "\n" + `à la ligne, assez long pour compter`
	b.ReportAllocs()
	b.SetBytes(int64(len(s)))
	for i := 0; i < b.N; i++ {
		buf = AppendString(buf[:0], s)
	}
}

func BenchmarkCheckName(b *testing.B) {
	names := []string{"282c02424eed", "capteur-é2", "sensor 12", "measurement_period_base", "Paramètres Texte"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if CheckName(names[i%len(names)]) != "" {
			b.Fatal("valid name rejected")
		}
	}
}
