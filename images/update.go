package images

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/gokrazy/updater"
)

// CheckRootFS verifies that path is a squashfs image that fits a root
// partition, so that a truncated or foreign file is refused before a
// single byte reaches the appliance.
func CheckRootFS(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("root file system: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	sb := make([]byte, 96)
	if _, err := io.ReadFull(f, sb); err != nil {
		return 0, fmt.Errorf("root file system %s: too short for a squashfs superblock (%d bytes)", path, fi.Size())
	}
	if string(sb[:4]) != "hsqs" {
		return 0, fmt.Errorf("root file system %s: not a squashfs image (magic %q)", path, sb[:4])
	}
	used := int64(leUint64(sb[40:48]))
	if used > fi.Size() {
		return 0, fmt.Errorf("root file system %s: truncated: superblock says %d bytes, file has %d", path, used, fi.Size())
	}
	if fi.Size() > rootSize {
		return 0, fmt.Errorf("root file system %s: %w: %d MiB, a root partition holds %d MiB", path, ErrDiskTooSmall, fi.Size()>>20, int64(rootSize)>>20)
	}
	return fi.Size(), nil
}

// Progress is called while an update uploads.
type Progress func(sent, total int64, elapsed time.Duration)

type progressReader struct {
	r     io.Reader
	sent  int64
	total int64
	start time.Time
	last  time.Time
	fn    Progress
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.sent += int64(n)
	if p.fn != nil && (time.Since(p.last) > 500*time.Millisecond || err == io.EOF) {
		p.last = time.Now()
		p.fn(p.sent, p.total, time.Since(p.start))
	}
	return n, err
}

// Update pushes rootfs to the appliance at baseURL (gokrazy's update API,
// e.g. http://127.0.0.1:8081/) with gokrazy's updater: the new root goes to
// the inactive root partition, is verified by hash, and only then does
// the boot partition switch to it and the box reboot (through the
// firmware, not kexec, so the boot loader's configuration is exercised).
// A failed or corrupted upload leaves the running system untouched.
func Update(ctx context.Context, baseURL, password, rootfs string, client *http.Client, progress Progress) error {
	total, err := CheckRootFS(rootfs)
	if err != nil {
		return err
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return fmt.Errorf("update: target %q: %w", baseURL, err)
	}
	u.User = url.UserPassword("gokrazy", password)
	if client == nil {
		client = &http.Client{}
	}
	target, err := updater.NewTarget(ctx, u.String(), client)
	if err != nil {
		return fmt.Errorf("update: reach %s: %w", baseURL, err)
	}
	f, err := os.Open(rootfs)
	if err != nil {
		return err
	}
	defer f.Close()
	pr := &progressReader{r: f, total: total, start: time.Now(), fn: progress}
	if err := target.StreamTo(ctx, "root", pr); err != nil {
		return fmt.Errorf("update: upload of the root file system failed, the appliance keeps running its current version: %w", err)
	}
	if err := target.Switch(ctx); err != nil {
		return fmt.Errorf("update: switch to the new root partition: %w", err)
	}
	if err := target.Reboot(ctx, updater.WithKexec(false)); err != nil {
		return fmt.Errorf("update: reboot: %w", err)
	}
	return nil
}
