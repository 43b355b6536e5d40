// Package defaultmodel embeds Hypha's default model, hypha-kjv-tiny: a
// tiny llama-architecture model the project trained itself on the King
// James Bible (public domain), so that a box with no other model answers
// in real English words. It is a demonstration model: it continues text
// in the style of the KJV, knows no facts and has no safety tuning.
// models/README.md is its model card and models/ holds the scripts that
// reproduce it.
//
// The model is installed by writing it into the models directory with
// WriteTo; a steward's own GGUF files there take precedence.
//
// Everything here is safe for concurrent use, but concurrent WriteTo calls
// on the same directory race on which one's (identical) file lands last.
package defaultmodel

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Name is the model's general.name.
const Name = "hypha-kjv-tiny"

// FileName is the name WriteTo gives the file.
const FileName = Name + ".gguf"

//go:embed hypha-kjv-tiny.gguf
var data []byte

// Size is the size of the embedded GGUF file in bytes.
func Size() int64 { return int64(len(data)) }

// SHA256 is the hex SHA-256 of the embedded GGUF file.
func SHA256() string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// Bytes returns the embedded GGUF file. The slice is shared: callers must
// not modify it.
func Bytes() []byte { return data }

// WriteTo installs the default model in dir (created if missing) and
// returns the path of the file, unless dir already holds another *.gguf
// file: a steward's own models take precedence, and WriteTo then writes
// nothing and returns "" and a nil error.
//
// It is idempotent: when dir already holds FileName with the embedded
// content, it returns its path without writing. A FileName with other
// content (an older default) is replaced when it is the only GGUF file.
// The file is written to a temporary name, synced and renamed, so dir
// never holds a partial FileName.
func WriteTo(dir string) (path string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("defaultmodel: write to %s: %w", dir, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("defaultmodel: write to %s: %w", dir, err)
	}
	path = filepath.Join(dir, FileName)
	haveOurs := false
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(strings.ToLower(n), ".gguf") || strings.HasPrefix(n, ".") {
			continue
		}
		if n == FileName {
			haveOurs = true
			continue
		}
		return "", nil // a steward's model
	}
	if haveOurs && sameContent(path) {
		return path, nil
	}
	if err := writeAtomic(dir, path); err != nil {
		return "", fmt.Errorf("defaultmodel: write to %s: %w", dir, err)
	}
	return path, nil
}

// sameContent reports whether the file at path is the embedded model.
func sameContent(path string) bool {
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() || st.Size() != int64(len(data)) {
		return false
	}
	b, err := os.ReadFile(path)
	return err == nil && bytes.Equal(b, data)
}

func writeAtomic(dir, path string) (err error) {
	f, err := os.CreateTemp(dir, "."+FileName+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	d, derr := os.Open(dir)
	if derr != nil {
		return nil // the rename happened; syncing the directory is best effort
	}
	defer d.Close()
	if serr := d.Sync(); serr != nil && !errors.Is(serr, os.ErrInvalid) {
		return fmt.Errorf("sync directory: %w", serr)
	}
	return nil
}
