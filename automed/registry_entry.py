"""What MLflow logs as the code of a registered model ("models from code": nothing is pickled).

MLflow copies this file into the model and runs it when the model is loaded; it names the model class, which reads
the bundle from the model's artifacts. Never imported by automed itself.
"""

from mlflow.models import set_model

from automed.registry_model import EnsembleModel

set_model(EnsembleModel())
