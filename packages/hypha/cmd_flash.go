package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/univrs/hypha/provisioning/flash"
)

func init() {
	register(command{
		name:    "flash",
		summary: "write an image to a USB stick or disk, verify it, say when it is safe to remove",
		run:     runFlash,
	})
}

func runFlash(ctx context.Context, args []string) error {
	return flashMain(ctx, args, os.Stdin, os.Stdout, fileIsTerminal(os.Stdout))
}

func flashMain(ctx context.Context, args []string, stdin io.Reader, out io.Writer, tty bool) error {
	fs := flag.NewFlagSet("flash", flag.ContinueOnError)
	yes := fs.Bool("yes", false, "do not ask before erasing a block device")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: hypha flash [-yes] IMAGE DEVICE\n       hypha flash IMAGE    (lists the disks)\n\n"+
			"Writes IMAGE to DEVICE (a whole disk such as /dev/sdb, or a file), then reads it back\n"+
			"and compares SHA-256. Refuses mounted disks and the disk the system runs from.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 1 {
		return listCandidates(out, fs.Arg(0), flash.Options{})
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return flag.ErrHelp
	}
	image, device := fs.Arg(0), fs.Arg(1)
	tgt, err := flash.Check(device, flash.Options{})
	if err != nil {
		return err
	}
	confirm := ""
	if tgt.IsBlock {
		confirm = fmt.Sprintf("%s (%s) will be ERASED", device, humanBytes(tgt.Size))
	} else if st, err := os.Stat(device); err == nil && st.Size() > 0 {
		confirm = fmt.Sprintf("%s exists (%s) and will be OVERWRITTEN", device, humanBytes(st.Size()))
	}
	if confirm != "" && !*yes {
		fmt.Fprintf(out, "%s. Type yes to continue: ", confirm)
		line, _ := bufio.NewReader(stdin).ReadString('\n')
		if strings.TrimSpace(line) != "yes" {
			return fmt.Errorf("not confirmed; nothing was written (use -yes in scripts)")
		}
	}
	pr := &progressPrinter{w: out, tty: tty}
	res, err := flash.Flash(ctx, image, device, flash.Options{
		Progress: pr.show,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	pr.end()
	switch {
	case errors.Is(err, flash.ErrInterrupted), errors.Is(err, context.Canceled):
		fmt.Fprintf(out, "INTERRUPTED: %s holds a partial image and will not boot. Run hypha flash again.\n", device)
		return err
	case errors.Is(err, flash.ErrVerify):
		fmt.Fprintf(out, "VERIFY FAILED: what %s returned differs from the image. The stick may be faulty or fake; try another.\n", device)
		return err
	case err != nil:
		return err
	}
	fmt.Fprintf(out, "verified: %s read back matches %s (SHA-256 %s)\n", device, image, res.SHA256)
	fmt.Fprintf(out, "wrote %s in %s (%s/s), verified in %s\n", humanBytes(res.Bytes), res.WriteTime.Round(time.Millisecond),
		humanBytes(int64(float64(res.Bytes)/max(res.WriteTime.Seconds(), 1e-9))), res.VerifyTime.Round(time.Millisecond))
	if res.BlockDev {
		fmt.Fprintf(out, "It is now safe to remove %s.\n", device)
	} else {
		fmt.Fprintf(out, "%s is complete and synced.\n", device)
	}
	return nil
}

// listCandidates prints the disks IMAGE could go to, and why the others
// cannot.
func listCandidates(out io.Writer, image string, o flash.Options) error {
	cands, err := flash.Candidates(o)
	if err != nil {
		return err
	}
	var size int64
	if st, err := os.Stat(image); err == nil {
		size = st.Size()
	}
	fmt.Fprintf(out, "disks on this machine (image %s, %s):\n", image, humanBytes(size))
	ok := 0
	for _, c := range cands {
		kind := "internal"
		switch {
		case c.USB:
			kind = "USB"
		case c.Removable:
			kind = "removable"
		}
		why := c.Refused
		if why == "" && size > c.SizeBytes {
			why = "too small for the image"
		}
		state := "can be flashed"
		if why != "" {
			state = "refused: " + why
		} else {
			ok++
		}
		fmt.Fprintf(out, "  %-14s %10s  %-9s %-28s %s\n", c.Device, humanBytes(c.SizeBytes), kind, c.Model, state)
	}
	if ok == 0 {
		fmt.Fprintln(out, "no disk can be flashed: plug in a USB stick (and unmount it if your desktop mounted it)")
		return nil
	}
	fmt.Fprintf(out, "then: hypha flash %s /dev/DISK\n", image)
	return nil
}

// progressPrinter redraws one line on a terminal, and prints a plain line per
// 10%% (and per phase end) otherwise, so logs stay short.
type progressPrinter struct {
	w        io.Writer
	tty      bool
	lastPct  int
	phase    string
	drawn    bool
	lastLine int
}

var phaseName = map[string]string{"write": "writing", "sync": "syncing", "verify": "verifying"}

func (p *progressPrinter) show(pr flash.Progress) {
	if pr.Phase != p.phase {
		p.end()
		p.phase, p.lastPct = pr.Phase, -1
	}
	pct := 0
	if pr.Total > 0 {
		pct = int(pr.Done * 100 / pr.Total)
	}
	line := fmt.Sprintf("%-9s %9s / %-9s %3d%%  %9s/s", phaseName[pr.Phase], humanBytes(pr.Done), humanBytes(pr.Total), pct, humanBytes(int64(pr.Rate)))
	if pr.Remaining > 0 {
		line += fmt.Sprintf("  %s left", pr.Remaining.Round(time.Second))
	}
	if p.tty {
		pad := max(p.lastLine-len(line), 0)
		fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
		p.lastLine, p.drawn = len(line), true
		return
	}
	if pct/10 != p.lastPct/10 || pr.Done == pr.Total && p.lastPct != 100 {
		fmt.Fprintln(p.w, line)
		p.lastPct = pct
	}
}

func (p *progressPrinter) end() {
	if p.tty && p.drawn {
		fmt.Fprintln(p.w)
		p.drawn, p.lastLine = false, 0
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
