package main

import "runtime/debug"

// buildVersion is what `ingestor --version` prints: the version given at link time if any;
// otherwise the main module's version from the build info (a release tag, or the pseudo-version
// `go build` derives from the VCS revision), else the VCS revision itself ("-dirty" when the
// tree had changes), else "dev". The date is the revision's commit time, or "unknown".
func buildVersion(linked string) (version, date string) {
	info, _ := debug.ReadBuildInfo()
	return versionFromBuildInfo(linked, info)
}

func versionFromBuildInfo(linked string, info *debug.BuildInfo) (version, date string) {
	version, date = linked, "unknown"
	if info == nil {
		if version == "" {
			version = "dev"
		}
		return version, date
	}
	var revision, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value
		case "vcs.time":
			date = s.Value
		}
	}
	switch {
	case version != "":
	case info.Main.Version != "" && info.Main.Version != "(devel)":
		version = info.Main.Version
	case revision != "":
		version = revision
		if modified == "true" {
			version += "-dirty"
		}
	default:
		version = "dev"
	}
	return version, date
}
