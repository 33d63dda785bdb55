package record_test

import (
	"fmt"

	"github.com/ycq-dev/ycq/internal/record"
)

// Two producers write records; a consumer checks each and verifies them
// all. One record of producer 1 never arrives.
func Example() {
	f := record.Format{Sum: true}
	var log []record.Seen
	slot := make([]byte, 32)
	for pos := range uint64(6) {
		if pos == 3 {
			continue // producer 1's record 1 is lost
		}
		f.Fill(slot, record.Header{Seq: pos / 2, Producer: uint32(pos % 2)})
		h, err := f.Check(slot)
		if err != nil {
			fmt.Println(err)
			return
		}
		log = append(log, record.Seen{Pos: pos, Producer: h.Producer, Seq: h.Seq})
	}
	fmt.Println(record.VerifyLog(log, 2, 3))
	// Output: producer 1: record 2 at position 5, want 1 (lost)
}
