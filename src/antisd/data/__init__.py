"""Problems: loading and checking maths and code training data, and the data shipped with antisd."""
