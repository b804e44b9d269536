//go:build amd64 && !purego

package tensor

// Every vector integer kernel the CPU can run joins TestIntDot, TestIntDotExtremes
// and TestActQuantize, not only the one init installed.
func init() {
	if hasInt8AVX2 {
		extraDotActs["Q4_K"] = append(extraDotActs["Q4_K"], namedDotAct{"AVX2", dotQ4_KQ8Fast})
		extraDotActs["Q6_K"] = append(extraDotActs["Q6_K"], namedDotAct{"AVX2", dotQ6_KQ8Fast})
		extraDotActs["Q5_K"] = append(extraDotActs["Q5_K"], namedDotAct{"AVX2", dotQ5_KQ8Fast})
		extraDotActs["Q8_0"] = append(extraDotActs["Q8_0"], namedDotAct{"AVX2", dotQ8_0Q8Fast})
		extraDotActs["Q4_0"] = append(extraDotActs["Q4_0"], namedDotAct{"AVX2", dotQ4_0Q8Fast})
		extraDotActs["Q5_0"] = append(extraDotActs["Q5_0"], namedDotAct{"AVX2", dotQ5_0Q8Fast})
		extraDotActs["Q4_1"] = append(extraDotActs["Q4_1"], namedDotAct{"AVX2", dotQ4_1Q8Fast})
		extraDotActs["Q5_1"] = append(extraDotActs["Q5_1"], namedDotAct{"AVX2", dotQ5_1Q8Fast})
	}
	if hasInt8VNNI {
		extraActQuantizers[actQ8_K] = append(extraActQuantizers[actQ8_K], quantizeActQ8_KFast)
		extraActQuantizers[actQ8_0] = append(extraActQuantizers[actQ8_0], quantizeActQ8_0Fast)
		extraDotActs["Q8_0"] = append(extraDotActs["Q8_0"], namedDotAct{"VNNI", dotQ8_0Q8Fast512})
		extraDotActs["Q4_K"] = append(extraDotActs["Q4_K"], namedDotAct{"VNNI", dotQ4_KQ8Fast512})
		extraDotActs["Q6_K"] = append(extraDotActs["Q6_K"], namedDotAct{"VNNI", dotQ6_KQ8Fast512})
		extraDotActs["Q5_K"] = append(extraDotActs["Q5_K"], namedDotAct{"VNNI", dotQ5_KQ8Fast512})
		extraDotActs["Q4_0"] = append(extraDotActs["Q4_0"], namedDotAct{"VNNI", dotQ4_0Q8Fast512})
		extraDotActs["Q5_0"] = append(extraDotActs["Q5_0"], namedDotAct{"VNNI", dotQ5_0Q8Fast512})
		extraDotActs["Q4_1"] = append(extraDotActs["Q4_1"], namedDotAct{"VNNI", dotQ4_1Q8Fast512})
		extraDotActs["Q5_1"] = append(extraDotActs["Q5_1"], namedDotAct{"VNNI", dotQ5_1Q8Fast512})
	}
}
