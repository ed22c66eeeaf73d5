pub struct Pca;
