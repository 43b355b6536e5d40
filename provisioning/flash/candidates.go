package flash

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Candidate is a whole disk as `hypha flash IMAGE` lists it.
type Candidate struct {
	Device    string // /dev/<name>
	SizeBytes int64
	Model     string
	Removable bool
	USB       bool
	// Refused is why Flash would refuse it ("" when it may be flashed).
	Refused string
}

// Candidates lists the whole disks of the machine with what Flash would say
// about each, removable and USB disks first. Loop, RAM, zram, device-mapper
// and md devices are left out.
func Candidates(o Options) ([]Candidate, error) {
	o.defaults()
	ents, err := os.ReadDir(filepath.Join(o.SysRoot, "block"))
	if err != nil {
		return nil, fmt.Errorf("list disks: %w", err)
	}
	c := checker{sys: o.SysRoot, mountInfo: o.MountInfo, swaps: o.Swaps}
	var out []Candidate
	for _, e := range ents {
		name := e.Name()
		if skipDisk(name) {
			continue
		}
		dir := filepath.Join(o.SysRoot, "block", name)
		read := func(f string) string {
			b, _ := os.ReadFile(filepath.Join(dir, f))
			return strings.TrimSpace(string(b))
		}
		var maj, min uint32
		if _, err := fmt.Sscanf(read("dev"), "%d:%d", &maj, &min); err != nil {
			continue
		}
		sectors, _ := strconv.ParseInt(read("size"), 10, 64)
		if sectors == 0 {
			continue // card reader without a card
		}
		cd := Candidate{Device: "/dev/" + name, SizeBytes: sectors * 512,
			Model: strings.TrimSpace(read("device/vendor") + " " + read("device/model")), Removable: read("removable") == "1"}
		if p, err := filepath.EvalSymlinks(dir); err == nil {
			cd.USB = strings.Contains(p, "/usb")
		}
		if err := c.checkBlock(cd.Device, unix.Mkdev(maj, min)); err != nil {
			var re *RefusedError
			if errors.As(err, &re) {
				cd.Refused = re.Why
			} else {
				cd.Refused = err.Error()
			}
		}
		out = append(out, cd)
	}
	// Likely targets first: removable/USB and flashable.
	rank := func(c Candidate) int {
		r := 0
		if c.Refused != "" {
			r += 4
		}
		if !c.USB && !c.Removable {
			r += 2
		}
		return r
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && rank(out[j]) < rank(out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out, nil
}

func skipDisk(name string) bool {
	for _, p := range []string{"loop", "ram", "zram", "dm-", "md", "nbd", "sr"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
