package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// Writer builds a GGUF (version 3) file: metadata in the order added, then
// tensor descriptions and tensor data, each tensor aligned to Alignment.
// A Writer is not safe for concurrent use.
type Writer struct {
	// Alignment of tensor data; 0 means DefaultAlignment. When not the
	// default, general.alignment must be set to the same value (SetAlignment does both).
	Alignment int64

	kvs     []KV
	keys    map[string]bool
	tensors []wtensor
	err     error
}

type wtensor struct {
	info  TensorInfo
	size  int64
	write func(io.Writer) error
}

// Add appends a metadata entry. Value must be one of the Go types listed on
// KV (a scalar or a typed slice; arrays of arrays are not supported).
func (w *Writer) Add(key string, value any) {
	if w.err != nil {
		return
	}
	if w.keys == nil {
		w.keys = map[string]bool{}
	}
	if w.keys[key] {
		w.err = fmt.Errorf("gguf: writer: duplicate key %q", key)
		return
	}
	t, at, ok := typeOf(value)
	if !ok {
		w.err = fmt.Errorf("gguf: writer: key %q: unsupported value type %T", key, value)
		return
	}
	w.keys[key] = true
	w.kvs = append(w.kvs, KV{Key: key, Type: t, ArrayType: at, Value: value})
}

// SetAlignment sets the data alignment and the general.alignment key.
func (w *Writer) SetAlignment(a uint32) {
	w.Alignment = int64(a)
	w.Add("general.alignment", a)
}

// AddTensor appends a tensor whose raw data is data (already in the layout
// of typ). dims are in ggml order (dims[0] innermost).
func (w *Writer) AddTensor(name string, typ TensorType, dims []uint64, data []byte) {
	w.AddTensorFunc(name, typ, dims, func(wr io.Writer) error {
		_, err := wr.Write(data)
		return err
	})
	if w.err == nil && w.tensors[len(w.tensors)-1].size != int64(len(data)) {
		w.err = fmt.Errorf("gguf: writer: tensor %q: %d bytes of data, want %d", name, len(data), w.tensors[len(w.tensors)-1].size)
	}
}

// AddTensorFunc appends a tensor whose data is produced by write at
// WriteTo time; write must write exactly the tensor's size in bytes.
func (w *Writer) AddTensorFunc(name string, typ TensorType, dims []uint64, write func(io.Writer) error) {
	if w.err != nil {
		return
	}
	ti := TensorInfo{Name: name, Dims: append([]uint64(nil), dims...), Type: typ}
	n, err := ti.Size()
	if err != nil {
		w.err = fmt.Errorf("gguf: writer: %w", err)
		return
	}
	for _, t := range w.tensors {
		if t.info.Name == name {
			w.err = fmt.Errorf("gguf: writer: duplicate tensor %q", name)
			return
		}
	}
	w.tensors = append(w.tensors, wtensor{info: ti, size: n, write: write})
}

type countWriter struct {
	w *bufio.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// WriteTo writes the file to out.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	if w.err != nil {
		return 0, w.err
	}
	align := w.Alignment
	if align == 0 {
		align = DefaultAlignment
	}
	cw := &countWriter{w: bufio.NewWriterSize(out, 1<<20)}
	e := &encoder{w: cw}
	e.raw([]byte(Magic))
	e.u32(3)
	e.u64(uint64(len(w.tensors)))
	e.u64(uint64(len(w.kvs)))
	for _, kv := range w.kvs {
		e.str(kv.Key)
		e.u32(uint32(kv.Type))
		e.value(kv.Type, kv.ArrayType, kv.Value)
	}
	off := int64(0)
	for i := range w.tensors {
		t := &w.tensors[i]
		t.info.Offset = uint64(off)
		e.str(t.info.Name)
		e.u32(uint32(len(t.info.Dims)))
		for _, d := range t.info.Dims {
			e.u64(d)
		}
		e.u32(uint32(t.info.Type))
		e.u64(t.info.Offset)
		off = alignUp(off+t.size, align)
	}
	e.pad(align)
	for i := range w.tensors {
		t := &w.tensors[i]
		if e.err != nil {
			break
		}
		start := cw.n
		if err := t.write(cw); err != nil {
			return cw.n, fmt.Errorf("gguf: writer: tensor %q: %w", t.info.Name, err)
		}
		if got := cw.n - start; got != t.size {
			return cw.n, fmt.Errorf("gguf: writer: tensor %q: wrote %d bytes, want %d", t.info.Name, got, t.size)
		}
		if i < len(w.tensors)-1 {
			e.pad(align)
		}
	}
	if e.err != nil {
		return cw.n, fmt.Errorf("gguf: writer: %w", e.err)
	}
	if err := cw.w.Flush(); err != nil {
		return cw.n, fmt.Errorf("gguf: writer: %w", err)
	}
	return cw.n, nil
}

type encoder struct {
	w   *countWriter
	err error
	buf [8]byte
}

func (e *encoder) raw(p []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(p)
	}
}
func (e *encoder) u32(v uint32) { binary.LittleEndian.PutUint32(e.buf[:4], v); e.raw(e.buf[:4]) }
func (e *encoder) u64(v uint64) { binary.LittleEndian.PutUint64(e.buf[:8], v); e.raw(e.buf[:8]) }
func (e *encoder) str(s string) { e.u64(uint64(len(s))); e.raw([]byte(s)) }
func (e *encoder) pad(a int64) {
	if n := alignUp(e.w.n, a) - e.w.n; n > 0 {
		e.raw(make([]byte, n))
	}
}

func (e *encoder) value(t, at ValueType, v any) {
	le := binary.LittleEndian
	switch x := v.(type) {
	case uint8:
		e.raw([]byte{x})
	case int8:
		e.raw([]byte{byte(x)})
	case bool:
		if x {
			e.raw([]byte{1})
		} else {
			e.raw([]byte{0})
		}
	case uint16:
		e.raw(le.AppendUint16(nil, x))
	case int16:
		e.raw(le.AppendUint16(nil, uint16(x)))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	case string:
		e.str(x)
	default:
		e.array(at, v)
	}
}

func (e *encoder) array(at ValueType, v any) {
	e.u32(uint32(at))
	switch x := v.(type) {
	case []string:
		e.u64(uint64(len(x)))
		for _, s := range x {
			e.str(s)
		}
	case []uint8:
		e.u64(uint64(len(x)))
		e.raw(x)
	default:
		n, each := sliceLen(v)
		e.u64(uint64(n))
		for i := 0; i < n; i++ {
			e.value(at, 0, each(i))
		}
	}
}

func sliceLen(v any) (int, func(int) any) {
	switch x := v.(type) {
	case []int8:
		return len(x), func(i int) any { return x[i] }
	case []bool:
		return len(x), func(i int) any { return x[i] }
	case []uint16:
		return len(x), func(i int) any { return x[i] }
	case []int16:
		return len(x), func(i int) any { return x[i] }
	case []uint32:
		return len(x), func(i int) any { return x[i] }
	case []int32:
		return len(x), func(i int) any { return x[i] }
	case []float32:
		return len(x), func(i int) any { return x[i] }
	case []uint64:
		return len(x), func(i int) any { return x[i] }
	case []int64:
		return len(x), func(i int) any { return x[i] }
	case []float64:
		return len(x), func(i int) any { return x[i] }
	}
	return 0, nil
}

func typeOf(v any) (t, at ValueType, ok bool) {
	switch v.(type) {
	case uint8:
		return TypeUint8, 0, true
	case int8:
		return TypeInt8, 0, true
	case bool:
		return TypeBool, 0, true
	case uint16:
		return TypeUint16, 0, true
	case int16:
		return TypeInt16, 0, true
	case uint32:
		return TypeUint32, 0, true
	case int32:
		return TypeInt32, 0, true
	case float32:
		return TypeFloat32, 0, true
	case uint64:
		return TypeUint64, 0, true
	case int64:
		return TypeInt64, 0, true
	case float64:
		return TypeFloat64, 0, true
	case string:
		return TypeString, 0, true
	case []uint8:
		return TypeArray, TypeUint8, true
	case []int8:
		return TypeArray, TypeInt8, true
	case []bool:
		return TypeArray, TypeBool, true
	case []uint16:
		return TypeArray, TypeUint16, true
	case []int16:
		return TypeArray, TypeInt16, true
	case []uint32:
		return TypeArray, TypeUint32, true
	case []int32:
		return TypeArray, TypeInt32, true
	case []float32:
		return TypeArray, TypeFloat32, true
	case []uint64:
		return TypeArray, TypeUint64, true
	case []int64:
		return TypeArray, TypeInt64, true
	case []float64:
		return TypeArray, TypeFloat64, true
	case []string:
		return TypeArray, TypeString, true
	}
	return 0, 0, false
}
