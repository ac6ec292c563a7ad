#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pretrain_fuzz::fuzz("hf-checkpoint", data));
