package appliance

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ProcService is one program of the image and whether it runs now.
type ProcService struct {
	Name    string
	Path    string
	Running bool
	PID     int
	Since   time.Time // process start, when running
}

// ScanServices lists the programs under each dir (on the appliance
// /user and /gokrazy) and matches them with the processes in procDir
// (/proc). It reads the real state of the machine, so the LAN page shows
// what gokrazy's supervisor actually runs.
func ScanServices(procDir string, dirs ...string) []ProcService {
	running := map[string]ProcService{}
	ents, _ := os.ReadDir(procDir)
	boot := bootTime(procDir)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join(procDir, e.Name(), "cmdline"))
		if err != nil || len(cmd) == 0 {
			continue
		}
		exe := string(bytes.SplitN(cmd, []byte{0}, 2)[0])
		ps := ProcService{Path: exe, Running: true, PID: pid}
		if st, err := os.ReadFile(filepath.Join(procDir, e.Name(), "stat")); err == nil && !boot.IsZero() {
			ps.Since = procStart(st, boot)
		}
		if old, ok := running[exe]; !ok || old.PID > pid {
			running[exe] = ps
		}
	}
	var out []ProcService
	for _, dir := range dirs {
		progs, _ := os.ReadDir(dir)
		for _, p := range progs {
			if p.IsDir() {
				continue
			}
			path := filepath.Join(dir, p.Name())
			s := ProcService{Name: p.Name(), Path: path}
			if r, ok := running[path]; ok {
				s.Running, s.PID, s.Since = true, r.PID, r.Since
			}
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func bootTime(procDir string) time.Time {
	b, err := os.ReadFile(filepath.Join(procDir, "stat"))
	if err != nil {
		return time.Time{}
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			if s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				return time.Unix(s, 0)
			}
		}
	}
	return time.Time{}
}

// procStart reads field 22 (starttime, in clock ticks since boot) of a
// /proc/<pid>/stat line. USER_HZ is 100 on every Linux we run on.
func procStart(stat []byte, boot time.Time) time.Time {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return time.Time{}
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return time.Time{}
	}
	ticks, err := strconv.ParseInt(f[19], 10, 64)
	if err != nil {
		return time.Time{}
	}
	return boot.Add(time.Duration(ticks) * (time.Second / 100))
}
