package images

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"os/exec"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// The partition layout gokrazy's A/B updates expect (see
// ../shared/research/image.md): boot, root A, root B, /perm.
const (
	sector     = 512
	bootStart  = 8192 // LBA; 4 MiB alignment
	bootSize   = 100 << 20
	rootSize   = 500 << 20
	minPerm    = 64 << 20
	gptReserve = 1 << 20 // backup GPT at the end of the disk
	// MinDiskSize is the smallest disk the layout fits on.
	MinDiskSize = bootStart*sector + bootSize + 2*rootSize + minPerm + gptReserve
)

// layout is the byte offsets of the four partitions of one image.
type layout struct {
	size        int64
	start, end  [4]int64 // byte offsets, end exclusive
	diskGUID    string
	partGUID    [4]string
	mbrSig      uint32 // Raspberry Pi: MBR disk signature
	raspberryPi bool
}

func newLayout(hostname string, size int64, rpi bool) *layout {
	l := &layout{size: size, raspberryPi: rpi}
	off := int64(bootStart * sector)
	sizes := [3]int64{bootSize, rootSize, rootSize}
	for i := 0; i < 3; i++ {
		l.start[i] = off
		off += sizes[i]
		l.end[i] = off
	}
	l.start[3] = off
	l.end[3] = (size - gptReserve) / (1 << 20) * (1 << 20)
	// Partition GUIDs follow upstream gokrazy's scheme so tools that know
	// it recognise our disks: 60c24cc1-f3f9-427a-8199-<fnv32a(host)>00NN.
	h := fnv.New32a()
	h.Write([]byte(hostname))
	sum := h.Sum32()
	l.diskGUID = fmt.Sprintf("60c24cc1-f3f9-427a-8199-%08x0000", sum)
	for i := range l.partGUID {
		l.partGUID[i] = fmt.Sprintf("60c24cc1-f3f9-427a-8199-%08x00%02d", sum, i+1)
	}
	l.mbrSig = sum
	return l
}

// cmdline is the kernel command line; root= names partition 2 the way
// gokrazy's rootdev understands and rewrites on /update/switch.
func (l *layout) cmdline(serial string) string {
	var root string
	if l.raspberryPi {
		root = fmt.Sprintf("root=PARTUUID=%08x-02", l.mbrSig)
	} else {
		root = "root=PARTUUID=" + strings.ToUpper(l.partGUID[0]) + "/PARTNROFF=1"
	}
	console := "console=tty1"
	if serial != "" && serial != "off" {
		console += " console=" + serial
	}
	return console + " " + root + " ro rootwait init=/gokrazy/init panic=10 oops=panic pci=nommconf"
}

func writeDisk(ctx context.Context, opts Options, l *layout, bootFAT, rootfs, out string) error {
	if l.end[3]-l.start[3] < minPerm {
		return fmt.Errorf("write disk: %w", ErrDiskTooSmall)
	}
	if l.raspberryPi {
		f, err := os.OpenFile(out, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		err = f.Truncate(l.size)
		if err == nil {
			err = writeMBR(f, l) // a failed MBR write must fail the build
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write MBR: %w", err)
		}
	} else {
		d, err := diskfs.Create(out, l.size, diskfs.SectorSizeDefault)
		if err != nil {
			return fmt.Errorf("create disk: %w", err)
		}
		parts := make([]*gpt.Partition, 4)
		names := [4]string{"boot", "root A", "root B", "perm"}
		for i := range parts {
			typ := gpt.LinuxFilesystem
			var attrs uint64
			if i == 0 {
				typ = gpt.EFISystemPartition
				attrs = 1 << 2 // legacy BIOS bootable: gptmbr.bin boots this one
			}
			parts[i] = &gpt.Partition{
				Index: i + 1, Start: uint64(l.start[i] / sector), End: uint64(l.end[i]/sector - 1),
				Type: typ, Name: names[i], GUID: l.partGUID[i], Attributes: attrs,
			}
		}
		table := &gpt.Table{Partitions: parts, LogicalSectorSize: sector, PhysicalSectorSize: sector,
			ProtectiveMBR: true, GUID: l.diskGUID}
		if err := d.Partition(table); err != nil {
			d.Close()
			return fmt.Errorf("write partition table: %w", err)
		}
		if err := d.Close(); err != nil {
			return err
		}
	}

	f, err := os.OpenFile(out, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if !l.raspberryPi {
		// SYSLINUX's GPT-aware MBR boot code (legacy BIOS); the partition
		// entries after byte 440 stay as go-diskfs wrote them.
		code, err := os.ReadFile(gptMBRPath)
		if err != nil {
			return fmt.Errorf("read SYSLINUX MBR code (Debian package syslinux-common): %w", err)
		}
		if len(code) > 440 {
			code = code[:440]
		}
		if _, err := f.WriteAt(code, 0); err != nil {
			return err
		}
	}
	if err := copyInto(f, bootFAT, l.start[0], l.end[0]-l.start[0]); err != nil {
		return fmt.Errorf("write boot partition: %w", err)
	}
	if err := copyInto(f, rootfs, l.start[1], l.end[1]-l.start[1]); err != nil {
		return fmt.Errorf("write root partition: %w", err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return mkfsPerm(ctx, out, l.start[3], l.end[3]-l.start[3], opts.PermDir)
}

// writeMBR writes a DOS partition table with the disk signature that the
// Raspberry Pi's root=PARTUUID=<sig>-02 refers to.
func writeMBR(f *os.File, l *layout) error {
	var mbr [512]byte
	binary.LittleEndian.PutUint32(mbr[440:], l.mbrSig)
	types := [4]byte{0x0e /* FAT16 LBA */, 0x83, 0x83, 0x83}
	for i := 0; i < 4; i++ {
		e := mbr[446+16*i:]
		e[4] = types[i]
		// CHS fields are unused by anything we boot; LBA only.
		e[1], e[2], e[3] = 0xfe, 0xff, 0xff
		e[5], e[6], e[7] = 0xfe, 0xff, 0xff
		binary.LittleEndian.PutUint32(e[8:], uint32(l.start[i]/sector))
		binary.LittleEndian.PutUint32(e[12:], uint32((l.end[i]-l.start[i])/sector))
	}
	mbr[446] = 0x80 // boot partition active
	mbr[510], mbr[511] = 0x55, 0xaa
	_, err := f.WriteAt(mbr[:], 0)
	return err
}

func copyInto(f *os.File, src string, off, max int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if fi.Size() > max {
		return fmt.Errorf("%w: %s is %d bytes, the partition holds %d", ErrDiskTooSmall, src, fi.Size(), max)
	}
	// The disk file is sparse: skip blocks of zeros so the image stays
	// small on disk (the FAT is mostly empty).
	buf := make([]byte, 64<<10)
	for pos := int64(0); ; {
		n, err := io.ReadFull(in, buf)
		if n > 0 && !allZero(buf[:n]) {
			if _, werr := f.WriteAt(buf[:n], off+pos); werr != nil {
				return werr
			}
		}
		pos += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// mkfsPerm formats /perm inside the image at its offset, seeded from dir.
func mkfsPerm(ctx context.Context, image string, off, size int64, dir string) error {
	args := []string{"-q", "-F", "-L", "perm", "-E", fmt.Sprintf("offset=%d", off)}
	if dir != "" {
		args = append(args, "-d", dir)
	}
	args = append(args, image, fmt.Sprintf("%dk", size/1024))
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "mkfs.ext4", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("format /perm (mkfs.ext4 from e2fsprogs): %v: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}
