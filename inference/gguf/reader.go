package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
)

// maxArrayDepth bounds the nesting of array values.
const maxArrayDepth = 4

// maxDims is GGML_MAX_DIMS; llama.cpp rejects tensors with more dimensions.
const maxDims = 4

// File is a decoded GGUF header: metadata, tensor descriptions and where
// the tensor data starts. It is immutable after Decode/Open and safe for
// concurrent use; Close (for files from Open) must not race with ReadTensor.
type File struct {
	Version    uint32
	KV         []KV         // in file order
	Tensors    []TensorInfo // in file order
	DataOffset int64        // absolute offset of the tensor data section
	Alignment  int64

	name    string
	r       io.ReaderAt
	size    int64
	osf     *os.File
	kvIndex map[string]int
	tIndex  map[string]int
}

// Open reads the header of the GGUF file at path. The file stays open for
// ReadTensor until Close. Errors name the path.
func Open(path string) (*File, error) {
	osf, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: open: %w", err)
	}
	st, err := osf.Stat()
	if err != nil {
		osf.Close()
		return nil, fmt.Errorf("gguf: open: %w", err)
	}
	f, err := decode(osf, st.Size(), path)
	if err != nil {
		osf.Close()
		return nil, err
	}
	f.osf = osf
	return f, nil
}

// Decode reads a GGUF header from r, which holds size bytes.
func Decode(r io.ReaderAt, size int64) (*File, error) {
	return decode(r, size, "gguf")
}

// Close releases the file opened by Open. It is idempotent and a no-op for
// files from Decode.
func (f *File) Close() error {
	if f.osf == nil {
		return nil
	}
	err := f.osf.Close()
	f.osf = nil
	return err
}

// Name is the path given to Open, or "gguf" for Decode.
func (f *File) Name() string { return f.name }

// Size is the size of the whole file in bytes.
func (f *File) Size() int64 { return f.size }

// ReaderAt returns the underlying reader of the whole file.
func (f *File) ReaderAt() io.ReaderAt { return f.r }

type decoder struct {
	br   *bufio.Reader
	pos  int64
	size int64
	buf  [8]byte
}

type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

func (d *decoder) fail(field, format string, args ...any) error {
	return &fieldError{field, fmt.Errorf(format+" (at byte %d of %d): %w", append(args, d.pos, d.size, ErrFormat)...)}
}

func (d *decoder) remaining() int64 { return d.size - d.pos }

func (d *decoder) read(field string, p []byte) error {
	if int64(len(p)) > d.remaining() {
		return d.fail(field, "truncated: need %d bytes, %d left", len(p), d.remaining())
	}
	if _, err := io.ReadFull(d.br, p); err != nil {
		return &fieldError{field, fmt.Errorf("read at byte %d: %w", d.pos, err)}
	}
	d.pos += int64(len(p))
	return nil
}

func (d *decoder) u32(field string) (uint32, error) {
	if err := d.read(field, d.buf[:4]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(d.buf[:4]), nil
}

func (d *decoder) u64(field string) (uint64, error) {
	if err := d.read(field, d.buf[:8]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(d.buf[:8]), nil
}

func (d *decoder) str(field string) (string, error) {
	n, err := d.u64(field + " length")
	if err != nil {
		return "", err
	}
	if n > uint64(d.remaining()) {
		return "", d.fail(field, "string length %d exceeds the %d bytes left", n, d.remaining())
	}
	b := make([]byte, n)
	if err := d.read(field, b); err != nil {
		return "", err
	}
	return string(b), nil
}

func decode(r io.ReaderAt, size int64, name string) (*File, error) {
	f, err := decodeHeader(r, size)
	if err != nil {
		return nil, fmt.Errorf("gguf: %s: %w", name, err)
	}
	f.name = name
	return f, nil
}

func decodeHeader(r io.ReaderAt, size int64) (*File, error) {
	if size < 0 {
		return nil, fmt.Errorf("negative size %d: %w", size, ErrFormat)
	}
	d := &decoder{br: bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 1<<16), size: size}
	var magic [4]byte
	if err := d.read("magic", magic[:]); err != nil {
		return nil, err
	}
	if string(magic[:]) != Magic {
		return nil, &fieldError{"magic", fmt.Errorf("got %q, want %q: not a GGUF file: %w", magic[:], Magic, ErrFormat)}
	}
	version, err := d.u32("version")
	if err != nil {
		return nil, err
	}
	switch {
	case version == 2 || version == 3:
	case version&0xffff == 0 && version != 0:
		return nil, &fieldError{"version", fmt.Errorf("%#x looks big-endian; only little-endian files are supported: %w", version, ErrUnsupported)}
	default:
		return nil, &fieldError{"version", fmt.Errorf("%d (want 2 or 3): %w", version, ErrUnsupported)}
	}
	nTensors, err := d.u64("tensor count")
	if err != nil {
		return nil, err
	}
	nKV, err := d.u64("metadata count")
	if err != nil {
		return nil, err
	}
	// Each KV needs at least 8 (key length) + 4 (type) + 1 bytes; each tensor
	// info at least 8 + 4 + 4 + 8.
	if nKV > uint64(d.remaining())/13 {
		return nil, d.fail("metadata count", "%d entries cannot fit in %d bytes", nKV, d.remaining())
	}
	if nTensors > uint64(d.remaining())/24 {
		return nil, d.fail("tensor count", "%d tensors cannot fit in %d bytes", nTensors, d.remaining())
	}
	f := &File{
		Version:   version,
		KV:        make([]KV, 0, nKV),
		Tensors:   make([]TensorInfo, 0, nTensors),
		Alignment: DefaultAlignment,
		r:         r,
		size:      size,
		kvIndex:   make(map[string]int, nKV),
		tIndex:    make(map[string]int, nTensors),
	}
	for i := uint64(0); i < nKV; i++ {
		field := fmt.Sprintf("metadata[%d]", i)
		key, err := d.str(field + " key")
		if err != nil {
			return nil, err
		}
		field = fmt.Sprintf("metadata[%d] %q", i, key)
		if _, dup := f.kvIndex[key]; dup {
			return nil, &fieldError{field, fmt.Errorf("duplicate key: %w", ErrFormat)}
		}
		t, err := d.u32(field + " type")
		if err != nil {
			return nil, err
		}
		kv := KV{Key: key, Type: ValueType(t)}
		kv.Value, kv.ArrayType, err = d.value(field, kv.Type, 0)
		if err != nil {
			return nil, err
		}
		f.kvIndex[key] = len(f.KV)
		f.KV = append(f.KV, kv)
	}
	if i, ok := f.kvIndex["general.alignment"]; ok {
		kv := f.KV[i]
		a, ok := kv.Value.(uint32)
		if !ok {
			return nil, &fieldError{"general.alignment", fmt.Errorf("type %v, want uint32: %w", kv.Type, ErrFormat)}
		}
		if a == 0 || a&(a-1) != 0 {
			return nil, &fieldError{"general.alignment", fmt.Errorf("%d is not a power of two: %w", a, ErrFormat)}
		}
		f.Alignment = int64(a)
	}
	for i := uint64(0); i < nTensors; i++ {
		field := fmt.Sprintf("tensor[%d]", i)
		name, err := d.str(field + " name")
		if err != nil {
			return nil, err
		}
		field = fmt.Sprintf("tensor[%d] %q", i, name)
		if _, dup := f.tIndex[name]; dup {
			return nil, &fieldError{field, fmt.Errorf("duplicate tensor name: %w", ErrFormat)}
		}
		nd, err := d.u32(field + " dimension count")
		if err != nil {
			return nil, err
		}
		if nd > maxDims {
			return nil, d.fail(field, "%d dimensions (at most %d)", nd, maxDims)
		}
		ti := TensorInfo{Name: name, Dims: make([]uint64, nd)}
		for j := range ti.Dims {
			if ti.Dims[j], err = d.u64(field + " dimension"); err != nil {
				return nil, err
			}
		}
		typ, err := d.u32(field + " type")
		if err != nil {
			return nil, err
		}
		ti.Type = TensorType(typ)
		if ti.Offset, err = d.u64(field + " offset"); err != nil {
			return nil, err
		}
		f.tIndex[name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, ti)
	}
	f.DataOffset = alignUp(d.pos, f.Alignment)
	if len(f.Tensors) > 0 && f.DataOffset > size {
		return nil, &fieldError{"tensor data", fmt.Errorf("data section would start at %d, past the end of the %d-byte file: %w", f.DataOffset, size, ErrFormat)}
	}
	dataSize := uint64(size - min(f.DataOffset, size))
	for i := range f.Tensors {
		t := &f.Tensors[i]
		field := fmt.Sprintf("tensor[%d] %q", i, t.Name)
		if _, _, ok := t.Type.BlockSize(); !ok {
			continue // metadata readers may still use the file
		}
		n, err := t.Size()
		if err != nil {
			return nil, &fieldError{field, err}
		}
		if t.Offset%uint64(f.Alignment) != 0 {
			return nil, &fieldError{field, fmt.Errorf("offset %d is not aligned to %d: %w", t.Offset, f.Alignment, ErrFormat)}
		}
		if t.Offset > dataSize || uint64(n) > dataSize-t.Offset {
			return nil, &fieldError{field, fmt.Errorf("data [%d, +%d) runs past the %d bytes of tensor data: %w", t.Offset, n, dataSize, ErrFormat)}
		}
	}
	return f, nil
}

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }

// value decodes one value of type t.
func (d *decoder) value(field string, t ValueType, depth int) (v any, arrayType ValueType, err error) {
	if t == TypeString {
		s, err := d.str(field)
		return s, 0, err
	}
	if t == TypeArray {
		if depth >= maxArrayDepth {
			return nil, 0, d.fail(field, "arrays nested deeper than %d", maxArrayDepth)
		}
		et, err := d.u32(field + " array type")
		if err != nil {
			return nil, 0, err
		}
		n, err := d.u64(field + " array length")
		if err != nil {
			return nil, 0, err
		}
		v, err := d.array(field, ValueType(et), n, depth)
		return v, ValueType(et), err
	}
	sz := t.size()
	if sz == 0 {
		return nil, 0, &fieldError{field, fmt.Errorf("value type %d: %w", uint32(t), ErrUnsupported)}
	}
	if err := d.read(field, d.buf[:sz]); err != nil {
		return nil, 0, err
	}
	return scalar(t, d.buf[:sz]), 0, nil
}

func scalar(t ValueType, b []byte) any {
	le := binary.LittleEndian
	switch t {
	case TypeUint8:
		return b[0]
	case TypeInt8:
		return int8(b[0])
	case TypeBool:
		return b[0] != 0
	case TypeUint16:
		return le.Uint16(b)
	case TypeInt16:
		return int16(le.Uint16(b))
	case TypeUint32:
		return le.Uint32(b)
	case TypeInt32:
		return int32(le.Uint32(b))
	case TypeFloat32:
		return math.Float32frombits(le.Uint32(b))
	case TypeUint64:
		return le.Uint64(b)
	case TypeInt64:
		return int64(le.Uint64(b))
	case TypeFloat64:
		return math.Float64frombits(le.Uint64(b))
	}
	return nil
}

func (d *decoder) array(field string, et ValueType, n uint64, depth int) (any, error) {
	minSize := et.size()
	switch et {
	case TypeString:
		minSize = 8
	case TypeArray:
		minSize = 12
	case TypeBool:
		// bools must be 0 or 1 per the spec; we accept any byte as llama.cpp does.
	}
	if minSize == 0 {
		return nil, &fieldError{field, fmt.Errorf("array element type %d: %w", uint32(et), ErrUnsupported)}
	}
	if n > uint64(d.remaining())/uint64(minSize) {
		return nil, d.fail(field, "array of %d %v elements cannot fit in the %d bytes left", n, et, d.remaining())
	}
	switch et {
	case TypeString:
		out := make([]string, n)
		for i := range out {
			s, err := d.str(field)
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	case TypeArray:
		out := make([]any, n)
		for i := range out {
			v, _, err := d.value(field, TypeArray, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	}
	raw := make([]byte, n*uint64(minSize))
	if err := d.read(field, raw); err != nil {
		return nil, err
	}
	return typedSlice(et, raw, int(n)), nil
}

func typedSlice(et ValueType, raw []byte, n int) any {
	le := binary.LittleEndian
	switch et {
	case TypeUint8:
		return raw
	case TypeInt8:
		out := make([]int8, n)
		for i := range out {
			out[i] = int8(raw[i])
		}
		return out
	case TypeBool:
		out := make([]bool, n)
		for i := range out {
			out[i] = raw[i] != 0
		}
		return out
	case TypeUint16:
		out := make([]uint16, n)
		for i := range out {
			out[i] = le.Uint16(raw[2*i:])
		}
		return out
	case TypeInt16:
		out := make([]int16, n)
		for i := range out {
			out[i] = int16(le.Uint16(raw[2*i:]))
		}
		return out
	case TypeUint32:
		out := make([]uint32, n)
		for i := range out {
			out[i] = le.Uint32(raw[4*i:])
		}
		return out
	case TypeInt32:
		out := make([]int32, n)
		for i := range out {
			out[i] = int32(le.Uint32(raw[4*i:]))
		}
		return out
	case TypeFloat32:
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
		return out
	case TypeUint64:
		out := make([]uint64, n)
		for i := range out {
			out[i] = le.Uint64(raw[8*i:])
		}
		return out
	case TypeInt64:
		out := make([]int64, n)
		for i := range out {
			out[i] = int64(le.Uint64(raw[8*i:]))
		}
		return out
	case TypeFloat64:
		out := make([]float64, n)
		for i := range out {
			out[i] = math.Float64frombits(le.Uint64(raw[8*i:]))
		}
		return out
	}
	return nil
}
