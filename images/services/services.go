// Package services is the list of programs an image's init supervises,
// written by the image builder to /etc/hypha/services.json and read by
// packages/init at boot. It is tiny on purpose: init links it.
package services

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
)

// Path is where the list lives in the root file system.
const Path = "/etc/hypha/services.json"

// Service is one supervised program.
type Service struct {
	// Path of the binary, e.g. /user/hyphad or /gokrazy/dhcp.
	Path string `json:"path"`
	// Args are the command-line flags (without the program name).
	Args []string `json:"args,omitempty"`
	// Env is KEY=VALUE pairs added to the environment.
	Env []string `json:"env,omitempty"`
	// DontStart leaves the service stopped until started from the web UI.
	DontStart bool `json:"dontStart,omitempty"`
	// WaitForClock delays the start until the clock is synchronised.
	WaitForClock bool `json:"waitForClock,omitempty"`
}

// List is the whole file.
type List struct {
	Version  int       `json:"version"`
	Services []Service `json:"services"`
}

// Decode parses and checks a services.json.
func Decode(b []byte) (*List, error) {
	var l List
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("decode %s: %w", Path, err)
	}
	if l.Version != 1 {
		return nil, fmt.Errorf("decode %s: unsupported version %d (want 1)", Path, l.Version)
	}
	for i, s := range l.Services {
		if !path.IsAbs(s.Path) || path.Clean(s.Path) != s.Path {
			return nil, fmt.Errorf("decode %s: service %d: path %q is not a clean absolute path", Path, i, s.Path)
		}
		for _, e := range s.Env {
			if !strings.Contains(e, "=") {
				return nil, fmt.Errorf("decode %s: service %s: environment entry %q has no '='", Path, s.Path, e)
			}
		}
	}
	return &l, nil
}
