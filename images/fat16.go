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

// shortNameMatches compares a directory entry's 8.3 name with a path
// component, accepting the first numeric-tail alias (NAME~1.EXT) that both
// mtools and gokrazy generate for names that do not fit 8.3.
func shortNameMatches(raw []byte, comp string) bool {
	name := strings.TrimRight(string(raw[:8]), " ")
	if ext := strings.TrimRight(string(raw[8:11]), " "); ext != "" {
		name += "." + ext
	}
	up := strings.ToUpper(comp)
	if strings.EqualFold(name, up) {
		return true
	}
	base, ext := up, ""
	if i := strings.LastIndex(up, "."); i >= 0 {
		base, ext = up[:i], up[i+1:]
	}
	if len(base) > 8 || len(ext) > 3 {
		if len(base) > 6 {
			base = base[:6]
		}
		if len(ext) > 3 {
			ext = ext[:3]
		}
		alias := base + "~1"
		if ext != "" {
			alias += "." + ext
		}
		return strings.EqualFold(name, alias)
	}
	return false
}
