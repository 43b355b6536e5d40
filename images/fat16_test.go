package images

import (
	"io"
	"testing"
)

// The matching rules are gokrazy's (internal/fat Reader.Extents); these
// cases were checked against that reader on a FAT written by mtools.
func TestShortNameMatchesGokrazy(t *testing.T) {
	for _, tt := range []struct {
		raw, comp string
		want      bool
	}{
		{"CMDLINE TXT", "cmdline.txt", true},
		{"GOKRAZ~1CON", "gokrazy.conf", true},
		{"LOADER~1CON", "loader.conf", true},
		{"LOADER     ", "loader", false}, // mtools' upper-case directory: gokrazy cannot find it
		{"loader     ", "loader", true},  // after patchShortNames
		{"entries    ", "entries", true},
		{"VMLINUZ    ", "vmlinuz", false},
		{"CMDLINE TXT", "cmdline.tx", false},
	} {
		if got := shortNameMatches([]byte(tt.raw), tt.comp); got != tt.want {
			t.Errorf("shortNameMatches(%q, %q) = %v, want %v", tt.raw, tt.comp, got, tt.want)
		}
	}
}

func FuzzReadFAT16File(f *testing.F) {
	f.Add(make([]byte, 1024), "/cmdline.txt")
	f.Fuzz(func(t *testing.T, img []byte, path string) {
		// Never panics on a hostile boot partition.
		readFAT16File(byteReaderAt(img), path)
	})
}

type byteReaderAt []byte

func (b byteReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
