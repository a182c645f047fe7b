package omerodemo

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"hash/fnv"
	"image"
	"image/color"
	"image/png"
)

// renderPNG draws a size×size gradient whose colours derive from seed, and
// stores comment in a tEXt chunk, so that the body says which node rendered
// it while staying a valid image.
func renderPNG(size int, seed, comment string) ([]byte, error) {
	h := fnv.New32a()
	h.Write([]byte(seed))
	sum := h.Sum32()
	base := color.RGBA{R: uint8(sum), G: uint8(sum >> 8), B: uint8(sum >> 16), A: 255}

	img := image.NewRGBA(image.Rect(0, 0, size, size))
	for y := range size {
		for x := range size {
			img.SetRGBA(x, y, color.RGBA{
				R: base.R + uint8(x*255/size),
				G: base.G + uint8(y*255/size),
				B: base.B,
				A: 255,
			})
		}
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, err
	}
	return insertText(buf.Bytes(), "Comment", comment), nil
}

// insertText returns the PNG data with a tEXt chunk (keyword, text) inserted
// before the final IEND chunk, which is always the last 12 bytes.
func insertText(data []byte, keyword, text string) []byte {
	payload := append([]byte(keyword+"\x00"), text...)
	chunk := make([]byte, 0, 12+len(payload))
	chunk = binary.BigEndian.AppendUint32(chunk, uint32(len(payload)))
	chunk = append(chunk, "tEXt"...)
	chunk = append(chunk, payload...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))

	iend := len(data) - 12
	out := make([]byte, 0, len(data)+len(chunk))
	out = append(out, data[:iend]...)
	out = append(out, chunk...)
	return append(out, data[iend:]...)
}
