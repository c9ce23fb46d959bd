//! What a run is checked against: the matrix file, the inventory file and
//! the selection of profiles and variables. `monitor check` compiles it
//! once, `monitor run` at start and again on every SIGHUP, so both go
//! through [`Sources::compile`] and a reload can never differ from a start.

use std::path::PathBuf;

use super::{Engine, EngineError};
use crate::{
    inventory::{self, Inventory, InventoryError},
    matrix::{Matrix, MatrixError, Selection},
};

/// The files and the selection an [`Engine`] is compiled from.
#[derive(Clone, Debug)]
pub struct Sources {
    pub matrix: PathBuf,
    pub inventory: Option<PathBuf>,
    pub inventory_limits: inventory::LoadOptions,
    pub selection: Selection,
}

/// A compiled engine and the warnings met on the way, each naming its file.
pub struct Compiled {
    pub engine: Engine,
    pub warnings: Vec<String>,
    /// What the engine was compiled from, kept to recompile it when DNS
    /// answers bind names (see `dns::live`).
    pub matrix: Matrix,
    pub inventory: Option<Inventory>,
    pub selection: Selection,
}

/// Why the sources did not compile; each names its file, line and column.
#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    #[error(transparent)]
    Matrix(#[from] MatrixError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error("{}: cannot compile the matrix", matrix.display())]
    Compile {
        matrix: PathBuf,
        #[source]
        source: EngineError,
    },
}

impl Sources {
    /// Loads the matrix and the inventory and compiles them for the
    /// selection.
    pub fn compile(&self) -> Result<Compiled, SourcesError> {
        let (matrix, matrix_warnings) = Matrix::load(&self.matrix)?;
        let mut warnings: Vec<String> = matrix_warnings.iter().map(|w| w.to_string()).collect();
        let inventory = match &self.inventory {
            Some(path) => {
                let (inv, inv_warnings) = Inventory::load_with(path, &self.inventory_limits)?;
                warnings.extend(inv_warnings.iter().map(|w| format!("warning: {w}")));
                Some(inv)
            }
            None => None,
        };
        let engine = Engine::new(&matrix, inventory.as_ref(), &self.selection)
            .map_err(|source| SourcesError::Compile { matrix: self.matrix.clone(), source })?;
        // An engine warning says "warning:" itself, after its position.
        warnings.extend(engine.warnings().iter().map(|w| w.to_string()));
        Ok(Compiled { engine, warnings, matrix, inventory, selection: self.selection.clone() })
    }
}
