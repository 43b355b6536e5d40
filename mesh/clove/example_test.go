package clove_test

import (
	"fmt"

	"github.com/univrs/hypha/mesh/clove"
)

// Split a message into 4 cloves of which any 3 rebuild it.
func ExampleSplit() {
	cloves, err := clove.Split([]byte("how much rain fell this week?"), 4, 3)
	if err != nil {
		panic(err)
	}
	// Cloves travel as bytes; any 3 of the 4 are enough.
	var got []clove.Clove
	for _, c := range cloves[1:] {
		b, _ := c.MarshalBinary()
		d, err := clove.DecodeClove(b)
		if err != nil {
			panic(err)
		}
		got = append(got, d)
	}
	msg, rejected, err := clove.Combine(got)
	fmt.Printf("%s %d %v\n", msg, len(rejected), err)
	_, _, err = clove.Combine(got[:2])
	fmt.Println(err != nil)
	// Output:
	// how much rain fell this week? 0 <nil>
	// true
}
