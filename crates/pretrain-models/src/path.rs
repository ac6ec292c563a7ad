//! Dotted parameter paths (`blocks.3.attn.query.weight`) tracked while a visitor or mapper walks
//! a module tree: the same names the safetensors checkpoints use.

/// Tracks the dotted path of the parameter being visited; feed it `enter_module` /
/// `exit_module` calls.
#[derive(Debug, Default, Clone)]
pub struct PathStack(Vec<String>);

impl PathStack {
    /// Enters a submodule (`ModuleVisitor::enter_module`).
    pub fn enter(&mut self, name: &str, container_type: &str) {
        // Enum variants (`ImageEncoder::Vit`) are not part of the weight names; an empty
        // segment keeps push and pop paired.
        let segment = if container_type.starts_with("Enum:") {
            ""
        } else {
            name
        };
        self.0.push(segment.to_string());
    }

    /// Leaves the submodule entered last (`ModuleVisitor::exit_module`).
    pub fn exit(&mut self) {
        self.0.pop();
    }

    /// The non-empty segments, outermost first.
    pub fn segments(&self) -> Vec<String> {
        self.0.iter().filter(|s| !s.is_empty()).cloned().collect()
    }

    /// The current path, dot-joined.
    pub fn path(&self) -> String {
        self.segments().join(".")
    }
}
