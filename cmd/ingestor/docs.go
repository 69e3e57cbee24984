package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/template"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/urfave/cli/v2"
)

// The engine's CLI shows a component's fields only as a YAML skeleton (`create`) or inside one
// large JSON schema of every component (`list --format jsonschema`); `ingestor docs` prints
// one component's documentation as its spec declares it: summary, description, and every field
// with its type, default, description, options and examples.

const (
	docsFlagFormat = "format"
	docsFormatText = "text"
	docsFormatJSON = "json"
)

// docsKinds are the component kinds `docs` looks in, in the order they are printed, with the
// engine's walk over the environment for each.
var docsKinds = []struct {
	kind string
	walk func(*service.Environment, func(string, *service.ConfigView))
}{
	{"input", (*service.Environment).WalkInputs},
	{"processor", (*service.Environment).WalkProcessors},
	{"output", (*service.Environment).WalkOutputs},
	{"cache", (*service.Environment).WalkCaches},
	{"rate_limit", (*service.Environment).WalkRateLimits},
	{"buffer", (*service.Environment).WalkBuffers},
	{"metrics", (*service.Environment).WalkMetrics},
	{"tracer", (*service.Environment).WalkTracers},
	{"scanner", (*service.Environment).WalkScanners},
}

func docsCommand(env *service.Environment) *cli.Command {
	return &cli.Command{
		Name:      "docs",
		Usage:     "Print a component's documentation, every field described",
		ArgsUsage: "[kind/]name ...",
		Description: `Prints the documentation of each named component as its spec declares it: summary,
description, every field (full path, type, default, description, options, examples), the
configuration with every field, and the spec's examples. A name that is both an input and an
output (kafka_franz) prints both unless the kind is given, as in input/kafka_franz; the kinds
are ` + docsKindList() + `.

  ingestor docs influxdb_v2
  ingestor docs input/kafka_franz reading_to_point
  ingestor docs --format json iot_error_record`,
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:  docsFlagFormat,
				Value: docsFormatText,
				Usage: "text, or json (the spec's documentation data, one object per component)",
			},
		},
		Action: func(c *cli.Context) error {
			format := c.String(docsFlagFormat)
			if format != docsFormatText && format != docsFormatJSON {
				return fmt.Errorf("docs: --%s %q: want %s or %s", docsFlagFormat, format, docsFormatText, docsFormatJSON)
			}
			if c.NArg() == 0 {
				return fmt.Errorf("docs: name a component, e.g. `ingestor docs influxdb_v2` (`ingestor list` shows them all)")
			}
			docs, err := findDocs(env, c.Args().Slice())
			if err != nil {
				return err
			}
			return writeDocs(c.App.Writer, format, docs)
		},
	}
}

func docsKindList() string {
	kinds := make([]string, len(docsKinds))
	for i, k := range docsKinds {
		kinds[i] = k.kind
	}
	return strings.Join(kinds, ", ")
}

// findDocs returns the documentation data of every component the arguments name, in the order
// asked, or an error naming the first argument that matches nothing.
func findDocs(env *service.Environment, args []string) ([]service.TemplateDataPlugin, error) {
	var out []service.TemplateDataPlugin
	for _, arg := range args {
		kind, name, hasKind := strings.Cut(arg, "/")
		if !hasKind {
			kind, name = "", arg
		}
		known := false
		found := 0
		for _, k := range docsKinds {
			if kind != "" && kind != k.kind {
				continue
			}
			known = true
			var views []*service.ConfigView
			k.walk(env, func(n string, v *service.ConfigView) {
				if n == name {
					views = append(views, v)
				}
			})
			for _, v := range views {
				data, err := v.TemplateData()
				if err != nil {
					return nil, fmt.Errorf("docs: %s %s: %w", k.kind, name, err)
				}
				out = append(out, data)
				found++
			}
		}
		if !known {
			return nil, fmt.Errorf("docs: %q: unknown kind %q, want one of %s", arg, kind, docsKindList())
		}
		if found == 0 {
			return nil, fmt.Errorf("docs: no component named %q (`ingestor list` shows them all)", arg)
		}
	}
	return out, nil
}

func writeDocs(w io.Writer, format string, docs []service.TemplateDataPlugin) error {
	if format == docsFormatJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(docs)
	}
	for i, d := range docs {
		if i > 0 {
			if _, err := io.WriteString(w, "\n"+strings.Repeat("=", 100)+"\n\n"); err != nil {
				return err
			}
		}
		if err := docsTextTemplate.Execute(w, d); err != nil {
			return fmt.Errorf("docs: %s %s: %w", d.Type, d.Name, err)
		}
	}
	return nil
}

// docsTextTemplate lays out one component for a terminal; descriptions keep their Markdown.
var docsTextTemplate = template.Must(template.New("docs").Funcs(template.FuncMap{
	"indent": func(n int, s string) string {
		pad := strings.Repeat(" ", n)
		lines := strings.Split(strings.TrimSpace(s), "\n")
		for i, l := range lines {
			if l != "" {
				lines[i] = pad + l
			}
		}
		return strings.Join(lines, "\n")
	},
	"options": func(f service.TemplateDataPluginField) string {
		var opts []string
		for _, o := range f.AnnotatedOptions {
			opts = append(opts, fmt.Sprintf("%s: %s", o[0], o[1]))
		}
		if len(opts) > 0 {
			return "\n      " + strings.Join(opts, "\n      ")
		}
		if len(f.Options) > 0 {
			sorted := append([]string(nil), f.Options...)
			sort.Strings(sorted)
			return " " + strings.Join(sorted, ", ")
		}
		return ""
	},
	"oneLine": func(s string) string { return strings.Join(strings.Fields(s), " ") },
}).Parse(`{{.Name}} ({{.Type}}{{with .Status}}, {{.}}{{end}})
{{indent 2 .Summary}}
{{with .Description}}
{{indent 2 .}}
{{end}}
FIELDS
{{range .Fields}}
  {{.FullName}}  ({{.Type}}{{with .DefaultMarshalled}}, default {{.}}{{end}}{{if .IsSecret}}, secret{{end}}{{if .IsInterpolated}}, interpolated{{end}})
{{indent 4 .Description}}
{{- with options .}}
    options:{{.}}{{end}}
{{- range .ExamplesMarshalled}}
    example: {{oneLine .}}{{end}}
{{end}}
CONFIGURATION WITH EVERY FIELD

{{indent 2 .AdvancedConfigYAML}}
{{range .Examples}}
EXAMPLE: {{.Title}}
{{with .Summary}}{{indent 2 .}}
{{end}}
{{indent 2 .Config}}
{{end}}`))
