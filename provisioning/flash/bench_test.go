package flash

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkFlash measures Flash (write + sync + read-back verify) to a
// regular file and to a loop device against two references in the same run:
// `dd bs=4M conv=fsync` (write only: ratio write-x-dd of the write phases)
// and the manual verified flash dd + sha256sum of image and read-back
// (ratio total-x-manual, >1 means hypha is faster).
func BenchmarkFlash(b *testing.B) {
	const size = 256 << 20
	dir := b.TempDir()
	img := filepath.Join(dir, "img")
	f, _ := os.Create(img)
	buf := make([]byte, 1<<20)
	for i := 0; i < size>>20; i++ {
		for j := range buf {
			buf[j] = byte(i + j*7)
		}
		f.Write(buf)
	}
	f.Close()
	targets := map[string]string{"file": filepath.Join(dir, "out")}
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("losetup"); err == nil {
			back := filepath.Join(dir, "loop.raw")
			os.WriteFile(back, nil, 0o644)
			os.Truncate(back, size+(16<<20))
			out, err := exec.Command("losetup", "--find", "--show", back).Output()
			if err == nil {
				dev := string(out[:len(out)-1])
				b.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
				targets["loop"] = dev
			}
		}
	}
	for _, name := range []string{"file", "loop"} {
		tgt, ok := targets[name]
		if !ok {
			continue
		}
		var ddRate float64
		b.Run(name+"/dd-reference", func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				t0 := time.Now()
				out, err := exec.Command("dd", "if="+img, "of="+tgt, "bs=4M", "conv=fsync", "status=none").CombinedOutput()
				if err != nil {
					b.Fatalf("dd: %v %s", err, out)
				}
				ddRate = size / time.Since(t0).Seconds()
			}
			b.ReportMetric(ddRate/1e6, "write-MB/s")
		})
		// The manual verified flash: dd, then sha256sum of the image and of
		// the same number of bytes read back (page cache dropped first).
		var manual time.Duration
		b.Run(name+"/dd+sha256sum-reference", func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				t0 := time.Now()
				script := fmt.Sprintf("dd if=%[1]s of=%[2]s bs=4M conv=fsync status=none && sha256sum %[1]s >/dev/null && "+
					"dd if=%[2]s bs=4M count=%[3]d iflag=direct status=none | sha256sum >/dev/null", img, tgt, size>>22)
				if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
					b.Fatalf("%s: %v %s", script, err, out)
				}
				manual = time.Since(t0)
			}
			b.ReportMetric(size/manual.Seconds()/1e6, "total-MB/s")
		})
		b.Run(name+"/hypha", func(b *testing.B) {
			b.SetBytes(size)
			var res Result
			for b.Loop() {
				var err error
				if res, err = Flash(context.Background(), img, tgt, Options{}); err != nil {
					b.Fatal(err)
				}
			}
			w := size / res.WriteTime.Seconds()
			b.ReportMetric(w/1e6, "write-MB/s")
			b.ReportMetric(size/res.VerifyTime.Seconds()/1e6, "verify-MB/s")
			if ddRate > 0 {
				b.ReportMetric(w/ddRate, "write-x-dd")
			}
			if manual > 0 {
				b.ReportMetric(manual.Seconds()/(res.WriteTime+res.VerifyTime).Seconds(), "total-x-manual")
			}
			b.Logf("%s: write %v, verify %v", name, res.WriteTime, res.VerifyTime)
		})
	}
}
