package main

import (
	"github.com/kvfoot/kvfoot/train"
)

func init() {
	register("duo", "train DuoAttention's head gates (which KV heads may forget)", runDuo)
}

func runDuo(args []string) error {
	fs := newFlags("duo")
	rf := addRunFlags(fs, 200, 4096)
	lr := fs.Float64("lr", 0.02, "AdamW learning rate of the gates")
	reg := fs.Float64("reg", 0.05, "weight of the L1 penalty on the gates")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, err := rf.setup("duo", train.RecallTasks, false)
	if err != nil {
		return err
	}
	defer s.close()
	if *rf.bench {
		return rf.runBench(s.m, true)
	}
	res, err := train.Duo(s.net, &train.DuoConfig{RunConfig: rf.config(), LR: *lr, Reg: *reg}, s.docs)
	return report(res, err, *rf.out, "full_attention_heads.tsv")
}
