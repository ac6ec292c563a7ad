//! Parameter counts and a one-line summary per model.

use burn::module::Module;
use burn::tensor::backend::Backend;

/// Number of scalar parameters of `model` (burn counts batch-norm running statistics too).
pub fn num_params<B: Backend, M: Module<B>>(model: &M) -> usize {
    model.num_params()
}

/// `"<name>: 1,234,567 parameters"`.
pub fn summary<B: Backend, M: Module<B>>(name: &str, model: &M) -> String {
    let digits = num_params(model).to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{name}: {grouped} parameters")
}
