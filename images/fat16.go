package images

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// readFAT16File reads a file the way gokrazy's update code finds it: a
// FAT16 root directory of fixed size, short (8.3) names, and the file
// stored in consecutive clusters starting at its first cluster. If this
// function cannot read a file, gokrazy cannot switch root partitions on
// an image, so the builder refuses to write such an image.
func readFAT16File(r io.ReaderAt, path string) ([]byte, error) {
	var bpb [512]byte
	if _, err := r.ReadAt(bpb[:], 0); err != nil {
		return nil, fmt.Errorf("read boot sector: %w", err)
	}
	sectorSize := int64(binary.LittleEndian.Uint16(bpb[11:]))
	perCluster := int64(bpb[13])
	reserved := int64(binary.LittleEndian.Uint16(bpb[14:]))
	numFATs := int64(bpb[16])
	rootEntries := int64(binary.LittleEndian.Uint16(bpb[17:]))
	fatSectors := int64(binary.LittleEndian.Uint16(bpb[22:]))
	if sectorSize != 512 || perCluster == 0 || rootEntries == 0 || fatSectors == 0 {
		return nil, errors.New("not a FAT16 file system (FAT32 has no fixed root directory)")
	}
	// gokrazy computes the root directory at reserved+fatSectors: it
	// assumes a single FAT, which is why buildBoot formats with -f 1.
	if numFATs != 1 {
		return nil, fmt.Errorf("FAT has %d copies of the allocation table; gokrazy's reader assumes 1", numFATs)
	}
	dirOffset := (reserved + fatSectors) * sectorSize
	dataOffset := dirOffset + (rootEntries*32+sectorSize-1)/sectorSize*sectorSize
	components := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for ci, comp := range components {
		found := false
		for i := int64(0); i < rootEntries; i++ {
			var e [32]byte
			if _, err := r.ReadAt(e[:], dirOffset+i*32); err != nil {
				return nil, fmt.Errorf("read directory: %w", err)
			}
			if e[0] == 0 || e[11] == 0x0f {
				continue
			}
			if !shortNameMatches(e[:11], comp) {
				continue
			}
			first := int64(binary.LittleEndian.Uint16(e[26:]))
			size := int64(binary.LittleEndian.Uint32(e[28:]))
			off := dataOffset + (first-2)*perCluster*sectorSize
			if e[11]&0x10 != 0 {
				if ci == len(components)-1 {
					return nil, fmt.Errorf("%s is a directory", path)
				}
				dirOffset = off
				found = true
				break
			}
			if size > 1<<20 {
				return nil, fmt.Errorf("%s: %d bytes: larger than any file the builder verifies", path, size)
			}
			b := make([]byte, size)
			if _, err := r.ReadAt(b, off); err != nil {
				return nil, fmt.Errorf("read %s: %w", path, err)
			}
			return b, nil
		}
		if !found {
			return nil, fmt.Errorf("%s: %q not found", path, comp)
		}
	}
	return nil, fmt.Errorf("%s not found", path)
}

// shortNameMatches reproduces gokrazy's FAT reader (internal/fat
// Reader.Extents) exactly, quirks included: it compares the entry's 8.3
// name case-insensitively with its own short-name rendering of the
// component, which always ends in "." + the padded extension; so a name
// without an extension ("loader", "entries") matches only when the entry
// holds the component byte for byte, lower case included (gokrazy's writer
// stores names as given). patchShortNames makes mtools' entries match.
func shortNameMatches(raw []byte, comp string) bool {
	name := string(raw[:8])
	if i := strings.IndexByte(name, ' '); i >= 0 {
		name = name[:i]
	}
	if raw[8] != ' ' {
		name += "." + string(raw[8:11])
	}
	up := strings.ToUpper(comp)
	base, ext := up, ""
	if i := strings.LastIndex(up, "."); i >= 0 {
		base, ext = up[:i], up[i+1:]
	}
	if len(base) > 8 || len(ext) > 3 {
		if len(base) > 6 {
			base = base[:6]
		}
		base += "~1"
		if len(ext) > 3 {
			ext = ext[:3]
		}
	}
	short := base + "." + ext // gokrazy pads ext to 3 spaces, then trims: "X." for no ext
	return strings.EqualFold(name, short) || name == comp
}

// patchShortNames rewrites the 8.3 names of the directories on the way to
// path in lower case, the form gokrazy's reader finds (see
// shortNameMatches). FAT drivers (Linux, OVMF, systemd-boot) compare short
// names case-insensitively, so booting is unaffected.
func patchShortNames(f io.ReaderAt, w io.WriterAt, dirs ...string) error {
	var bpb [512]byte
	if _, err := f.ReadAt(bpb[:], 0); err != nil {
		return err
	}
	sectorSize := int64(binary.LittleEndian.Uint16(bpb[11:]))
	perCluster := int64(bpb[13])
	reserved := int64(binary.LittleEndian.Uint16(bpb[14:]))
	rootEntries := int64(binary.LittleEndian.Uint16(bpb[17:]))
	fatSectors := int64(binary.LittleEndian.Uint16(bpb[22:]))
	dirOffset := (reserved + fatSectors) * sectorSize
	dataOffset := dirOffset + (rootEntries*32+sectorSize-1)/sectorSize*sectorSize
	entries := rootEntries
	for _, d := range dirs {
		want := fmt.Sprintf("%-11s", strings.ToUpper(d))
		found := false
		for i := int64(0); i < entries; i++ {
			var e [32]byte
			if _, err := f.ReadAt(e[:], dirOffset+i*32); err != nil {
				return err
			}
			if e[11] == 0x0f || e[11]&0x10 == 0 || !strings.EqualFold(string(e[:11]), want) {
				continue
			}
			copy(e[:11], fmt.Sprintf("%-11s", d))
			e[12] = 0 // no "lower case" flag: the bytes are lower case now
			if _, err := w.WriteAt(e[:13], dirOffset+i*32); err != nil {
				return err
			}
			first := int64(binary.LittleEndian.Uint16(e[26:]))
			dirOffset = dataOffset + (first-2)*perCluster*sectorSize
			entries = perCluster * sectorSize / 32
			found = true
			break
		}
		if !found {
			return fmt.Errorf("directory %q not found", d)
		}
	}
	return nil
}
