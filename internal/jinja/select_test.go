package jinja

import "testing"

// select, reject, selectattr and rejectattr as Jinja2 gives them, with a test named
// and without one (the value's truthiness).
func TestSelectFilters(t *testing.T) {
	renderEach(t, map[string]string{
		`{{ [0, 1, 2, '', 'x'] | select | list }}`:                                           "[1, 2, 'x']",
		`{{ [0, 1, 2, '', 'x'] | reject | list }}`:                                           "[0, '']",
		`{{ [1, 2, 3] | select('odd') | list }}`:                                             "[1, 3]",
		`{{ [1, 2, 3] | reject('odd') | list }}`:                                             "[2]",
		`{{ [1, 2, 3] | select('equalto', 2) | list }}`:                                      "[2]",
		`{{ [{'a': 1}, {'a': 0}, {}] | selectattr('a') | list }}`:                            "[{'a': 1}]",
		`{{ [{'a': 1}, {'a': 0}, {}] | rejectattr('a') | list | length }}`:                   "2",
		`{{ [{'r': 'system'}, {'r': 'user'}] | selectattr('r', 'equalto', 'user') | list }}`: "[{'r': 'user'}]",
		`{{ [{'r': 'system'}, {'r': 'user'}] | rejectattr('r', 'equalto', 'user') | list }}`: "[{'r': 'system'}]",
		`{{ [{'a': 1}, {}] | selectattr('a', 'defined') | list | length }}`:                  "1",
	})
}
